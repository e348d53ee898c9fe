"""The gateway's instruments (`gen_ai.*` and `agentcom.llm.*`), read back from `/metrics`."""

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from agentcom_common.testing import eventually, metric
from fake_llm import FakeLLM

Fake = Callable[..., Awaitable[FakeLLM]]
Register = Callable[..., Awaitable[dict[str, Any]]]
HI = {"model": "standard", "messages": [{"role": "user", "content": "hi"}], "stream": False}

pytestmark = pytest.mark.usefixtures("meters")


async def test_a_call_that_fails_over_is_measured_per_endpoint_model_and_tier(
    fake: Fake, api: httpx.AsyncClient, register: Register
) -> None:
    bad, good = await fake("bad"), await fake("good", models=["claude-x"])
    await register("m-bad", "ollama", bad.url, classes=["local"])
    await register("m-good", "anthropic", good.url, classes=["claude"], api_key="sk-ant")
    bad.status = 500
    before = (await api.get("/metrics")).text
    resp = await api.post("/api/chat", json=HI)
    assert resp.status_code == 200, resp.text
    routing = resp.json()["routing"]
    assert routing["endpoint_id"] == "m-good"

    async def scraped() -> str:
        text = (await api.get("/metrics")).text
        assert metric(text, "agentcom_llm_circuit", agentcom_llm_endpoint="m-good", state="closed")
        return text

    text = await eventually(scraped, timeout=10)

    def grew(name: str, **labels: str) -> float:
        return metric(text, name, **labels) - metric(before, name, **labels)

    called = {
        "agentcom_llm_endpoint": "m-good",
        "agentcom_llm_tier": routing["tier"],
        "gen_ai_request_model": "claude-x",
    }
    assert grew("gen_ai_client_operation_duration_seconds_count", **called) == 1
    assert grew("gen_ai_client_token_usage_count", gen_ai_token_type="output", **called) == 1
    assert grew("gen_ai_client_token_usage_sum", gen_ai_token_type="output", **called) > 0
    assert grew("agentcom_llm_failovers_total", agentcom_llm_endpoint="m-bad") == 1
    # the fast path skips FastAPI's router; the HTTP metric still names the route
    assert grew("http_server_request_duration_seconds_count", http_route="/api/chat") == 1
    assert "# TYPE agentcom_llm_cost_usd_total counter" in text
    assert "# TYPE agentcom_llm_tier_fallback gauge" in text
