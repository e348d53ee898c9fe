"""Fixtures: the registry served by a real uvicorn on a free port, and fake LLM upstreams."""

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentcom_common.settings import CommonSettings
from agentcom_llm_registry.settings import LlmSettings
from fake_llm import FakeLLM, serve

Json = dict[str, Any]


@pytest.fixture
async def fake() -> AsyncIterator[Callable[..., Awaitable[FakeLLM]]]:
    started: list[FakeLLM] = []

    async def make(name: str = "fake", **kwargs: Any) -> FakeLLM:
        server = FakeLLM(name, **kwargs)
        await server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        await server.stop()


@pytest.fixture
def llm_settings(settings: CommonSettings, tmp_path: Path) -> LlmSettings:
    return LlmSettings.model_validate(
        settings.model_dump()
        | {
            "llm_health_interval": timedelta(milliseconds=50),
            "llm_health_timeout": timedelta(milliseconds=500),
            "llm_unhealthy_after": 2,
            "llm_recover_backoff_max": timedelta(milliseconds=200),
            "llm_circuit_failures": 2,
            "llm_circuit_open": timedelta(milliseconds=300),
            "llm_ledger_flush_interval": timedelta(milliseconds=50),
            "llm_ledger_dir": str(tmp_path / "ledger"),
            "llm_request_timeout": timedelta(seconds=5),
        }
    )


@pytest.fixture
async def base_url(llm_settings: LlmSettings) -> AsyncIterator[str]:
    async with serve(llm_settings) as url:
        yield url


@pytest.fixture
async def api(base_url: str, admin_token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=10
    ) as client:
        yield client


async def add(
    api: httpx.AsyncClient, endpoint_id: str, provider: str, url: str, **extra: Any
) -> Json:
    """Register an endpoint and wait until its first health check passed."""
    resp = await api.post(
        "/api/llm/endpoints",
        json={"id": endpoint_id, "provider": provider, "base_url": url} | extra,
    )
    assert resp.status_code == 201, resp.text
    checked = await api.post(f"/api/llm/endpoints/{endpoint_id}/check")
    assert checked.json()["health"] == "healthy", checked.text
    return checked.json()


Register = Callable[..., Awaitable[Json]]


@pytest.fixture
def register(api: httpx.AsyncClient) -> Register:
    """`await register(id, provider, url, classes=[...])`: add an endpoint, checked healthy."""

    async def run(endpoint_id: str, provider: str, url: str, **extra: Any) -> Json:
        return await add(api, endpoint_id, provider, url, **extra)

    return run


Serve = Callable[[LlmSettings], contextlib.AbstractAsyncContextManager[str]]
Add = Callable[..., Awaitable[Json]]


@pytest.fixture
def serve_registry() -> Serve:
    """`async with serve_registry(settings) as url`: another registry process-alike."""
    return serve


@pytest.fixture
def add_endpoint() -> Add:
    """`await add_endpoint(client, id, provider, url, ...)` for a client of your own."""
    return add
