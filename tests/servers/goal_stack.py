"""The stack of the goal tests with real sidecars (`test_goals_sidecars`, `test_merge_conflicts`,
`test_pr_feedback`): the hub in this process, the llm-registry on a real socket (the sidecars'
agent loops call its gateway over HTTP while the hub calls it over NATS), and one fake model
behind it. The queue and the scheduler come from the `hub` fixture (tests/conftest.py); each
test module scripts only its model and what its hub does differently."""

import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx

from agentcom_common.settings import CommonSettings
from agentcom_common.testing import running
from agentcom_hubfsm.app import create_app as hub_app
from agentcom_hubfsm.settings import HubSettings
from agentcom_llm_registry.settings import LlmSettings
from fake_llm import FakeLLM, serve
from goal_fakes import add_local_endpoint

M = TypeVar("M", bound=FakeLLM)


@dataclass
class GoalStack(Generic[M]):
    queue: httpx.AsyncClient
    scheduler: httpx.AsyncClient
    hub: httpx.AsyncClient
    registry_url: str
    model: M


@contextlib.asynccontextmanager
async def goal_stack(
    settings: CommonSettings,
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    admin_token: str,
    tmp_path: Path,
    model: M,
    **hub_settings: Any,
) -> AsyncGenerator[GoalStack[M]]:
    """`clients`: the `hub` fixture's (queue, scheduler); `hub_settings` over the goal tests'
    common ones (goal sweeps and model backoff at milliseconds)."""
    base = settings.model_dump()
    llm = LlmSettings.model_validate(
        base
        | {
            "llm_health_interval": timedelta(milliseconds=200),
            "llm_ledger_flush_interval": timedelta(milliseconds=50),
            "llm_ledger_dir": str(tmp_path / "ledger"),
            "llm_request_timeout": timedelta(seconds=20),
        }
    )
    hub = HubSettings.model_validate(
        base
        | {
            "hub_goal_sweep": timedelta(milliseconds=200),
            "hub_llm_backoff": timedelta(milliseconds=100),
            "hub_data_dir": tmp_path / "hub",
        }
        | hub_settings
    )
    await model.start()
    queue, scheduler = clients
    try:
        async with (
            serve(llm) as registry_url,
            running(hub_app(hub), "http://hubfsm") as hubfsm,
            httpx.AsyncClient(base_url=registry_url) as registry,
        ):
            for client in (registry, hubfsm):
                client.headers["Authorization"] = f"Bearer {admin_token}"
            await add_local_endpoint(registry, model.url)
            yield GoalStack(queue, scheduler, hubfsm, registry_url, model)
    finally:
        await model.stop()
