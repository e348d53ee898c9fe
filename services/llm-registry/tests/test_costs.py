"""The ledger prices calls by the one price table (agentcom_common.prices)."""

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from agentcom_common.testing import eventually
from fake_llm import FakeLLM

Fake = Callable[..., Awaitable[FakeLLM]]
Register = Callable[..., Awaitable[dict[str, Any]]]
MODEL = "claude-sonnet-4-5-20250929"


async def test_a_claude_call_costs_its_list_price_in_the_reply_and_the_ledger(
    fake: Fake, api: httpx.AsyncClient, register: Register
) -> None:
    claude = await fake("claude", models=[MODEL])
    await register("claude", "anthropic", claude.url, classes=["claude"], api_key="sk-test")
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False}
    expected = (10 * 3.0 + 5 * 15.0) / 1_000_000  # the fake's 10 in, 5 out at $3/$15 per 1M

    ollama = await api.post("/api/chat", json=body)
    openai = await api.post("/v1/chat/completions", json=body)

    assert ollama.status_code == openai.status_code == 200, (ollama.text, openai.text)
    assert ollama.json()["cost_usd"] == pytest.approx(expected)  # what the sidecar reports
    assert openai.json()["cost_usd"] == pytest.approx(expected)

    async def ledgered() -> None:
        costs = (await api.get("/api/llm/costs", params={"group_by": "model"})).json()
        row = {r["key"]: r for r in costs["rows"]}[MODEL]
        assert (row["calls"], row["cost_usd"]) == (2, pytest.approx(2 * expected))

    await eventually(ledgered)
