"""`agentcom.rpc.llm.endpoints|check|fallback`: what the hub's health assessment and healing
ask of the registry (endpoint health by tier, a probe now, a dead tier routed higher)."""

from collections.abc import AsyncIterator, Awaitable, Callable
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
from agentcom_common.errors import ConflictError, NotFoundError
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
        nc, "llm", "fallback", RouteFallback(tier="trivial", seconds=60), TierFallback
    )
    assert (moved.classes, moved.until is not None) == (["big"], True)
    assert await routed_to(api, "trivial") == "b"
    listed = await micro.call(nc, "llm", "endpoints", ListEndpoints(), EndpointList)
    assert list(listed.fallbacks) == ["trivial"]

    with pytest.raises(ConflictError) as top:
        await micro.call(
            nc, "llm", "fallback", RouteFallback(tier="complex", seconds=60), TierFallback
        )
    assert top.value.code == "no_fallback"
    await micro.call(nc, "llm", "fallback", RouteFallback(tier="trivial", seconds=0), TierFallback)
    assert await routed_to(api, "trivial") == "s"

    small.health_status = 500  # a probe now sees it, whatever the health loop's timing
    probed = await micro.call(nc, "llm", "check", CheckEndpoint(endpoint_id="s"), EndpointHealth)
    assert probed.last_error is not None
    with pytest.raises(NotFoundError):
        await micro.call(nc, "llm", "check", CheckEndpoint(endpoint_id="x"), EndpointHealth)
