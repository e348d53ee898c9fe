"""`agentcom.rpc.llm.endpoints|check|fallback`: what the hub's health assessment and healing
ask of the registry (endpoint health by tier, a probe now, a dead tier routed higher)."""

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client

from agentcom_common import micro
from agentcom_common.contracts.llm import (
    CheckEndpoint,
    EndpointHealth,
    EndpointList,
    ListEndpoints,
    RouteFallback,
    TierFallback,
)
from agentcom_common.contracts.task import Tier
from agentcom_common.errors import ConflictError, NotFoundError
from agentcom_common.testing import eventually
from agentcom_llm_registry.settings import LlmSettings
from fake_llm import FakeLLM, serve

Fake = Callable[..., Awaitable[FakeLLM]]
Register = Callable[..., Awaitable[dict[str, Any]]]
TIERS = {"trivial": ["small"], "standard": ["big"], "complex": ["big"]}


@pytest.fixture
async def base_url(llm_settings: LlmSettings) -> AsyncIterator[str]:
    async with serve(llm_settings.model_copy(update={"llm_tiers": TIERS})) as url:
        yield url


async def routed_to(api: httpx.AsyncClient, tier: str) -> str:
    got = await api.get("/api/llm/route", params={"tier": tier})
    assert got.status_code == 200, got.text
    return got.json()["endpoint_id"]


async def test_endpoints_by_tier_a_probe_now_and_a_tier_routed_to_its_fallback(
    fake: Fake, api: httpx.AsyncClient, register: Register, nc: Client
) -> None:
    small, big = await fake("small"), await fake("big")
    await register("s", "ollama", small.url, classes=["small"])
    await register("b", "ollama", big.url, classes=["big"])
    listed = await micro.call(nc, "llm", "endpoints", ListEndpoints(), EndpointList)
    assert {e.id: e.tiers for e in listed.endpoints} == {
        "s": ["trivial"],
        "b": ["standard", "complex"],
    }
    assert (listed.tiers, listed.fallbacks) == (["trivial", "standard", "complex"], {})

    assert await routed_to(api, "trivial") == "s"
    moved = await micro.call(
        nc, "llm", "fallback", RouteFallback(tier=Tier.TRIVIAL, seconds=60), TierFallback
    )
    assert (moved.classes, moved.until is not None) == (["big"], True)
    assert await routed_to(api, "trivial") == "b"
    listed = await micro.call(nc, "llm", "endpoints", ListEndpoints(), EndpointList)
    assert list(listed.fallbacks) == ["trivial"]

    with pytest.raises(ConflictError) as top:
        await micro.call(
            nc, "llm", "fallback", RouteFallback(tier=Tier.COMPLEX, seconds=60), TierFallback
        )
    assert top.value.code == "no_fallback"
    await micro.call(
        nc, "llm", "fallback", RouteFallback(tier=Tier.TRIVIAL, seconds=0), TierFallback
    )
    assert await routed_to(api, "trivial") == "s"

    small.health_status = 500  # a probe now sees it, whatever the health loop's timing
    probed = await micro.call(nc, "llm", "check", CheckEndpoint(endpoint_id="s"), EndpointHealth)
    assert probed.last_error is not None
    with pytest.raises(NotFoundError):
        await micro.call(nc, "llm", "check", CheckEndpoint(endpoint_id="x"), EndpointHealth)


@contextlib.asynccontextmanager
async def replica(
    settings: LlmSettings, name: str, token: str, tmp: Path
) -> AsyncGenerator[httpx.AsyncClient]:
    """Another registry process on the same Postgres and NATS; its health pass (which also
    re-reads the endpoints and fallbacks) never comes: only its start and the fallback event
    tell it anything."""
    own = settings.model_copy(
        update={"llm_health_interval": timedelta(hours=1), "llm_ledger_dir": str(tmp / name)}
    )
    async with (
        serve(own) as url,
        httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        ) as client,
    ):
        yield client


async def test_a_fallback_is_shared_by_every_replica_survives_restarts_and_expires(
    fake: Fake,
    api: httpx.AsyncClient,
    register: Register,
    nc: Client,
    llm_settings: LlmSettings,
    admin_token: str,
    tmp_path: Path,
) -> None:
    small, big = await fake("small"), await fake("big")
    await register("s", "ollama", small.url, classes=["small"])
    await register("b", "ollama", big.url, classes=["big"])
    tiers = llm_settings.model_copy(update={"llm_tiers": TIERS})
    async with replica(tiers, "second", admin_token, tmp_path) as second:

        async def ready(c: httpx.AsyncClient = second) -> None:  # its first health pass ran
            assert await routed_to(c, "trivial") == "s"

        await eventually(ready, timeout=30)
        # whichever replica answers the RPC, both route the tier one up
        await micro.call(
            nc, "llm", "fallback", RouteFallback(tier=Tier.TRIVIAL, seconds=60), TierFallback
        )
        for client in (api, second):

            async def fallen(c: httpx.AsyncClient = client) -> None:
                assert await routed_to(c, "trivial") == "b"

            await eventually(fallen, timeout=30)

    async with replica(tiers, "third", admin_token, tmp_path) as third:  # a fresh start

        async def kept(c: httpx.AsyncClient = third) -> None:  # once its first pass ran
            assert await routed_to(c, "trivial") == "b"

        await eventually(kept, timeout=30)
        listed = await micro.call(nc, "llm", "endpoints", ListEndpoints(), EndpointList)
        assert list(listed.fallbacks) == ["trivial"]

        # a short one replaces it; each replica ends it when the database's clock says so
        short = await micro.call(
            nc, "llm", "fallback", RouteFallback(tier=Tier.TRIVIAL, seconds=1), TierFallback
        )
        assert short.until is not None
        for client in (api, third):

            async def back(c: httpx.AsyncClient = client) -> None:
                assert await routed_to(c, "trivial") == "s"

            await eventually(back, timeout=30)
        listed = await micro.call(nc, "llm", "endpoints", ListEndpoints(), EndpointList)
        assert listed.fallbacks == {}
