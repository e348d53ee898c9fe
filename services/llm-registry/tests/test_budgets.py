"""Budgets in tokens and USD per agent, goal and hub state: chosen by the token, reserved in
Postgres before the call, settled after it; driven through the real gateway routes against
small real model servers (`FakeLLM`: every reply uses 10 tokens in, 5 out)."""

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import auth, clock, subjects
from agentcom_common.contracts.hub import HubState, HubStateChanged
from agentcom_common.testing import eventually
from agentcom_llm_registry.settings import LlmSettings
from fake_llm import FakeLLM

Fake = Callable[..., Awaitable[FakeLLM]]
Serve = Callable[[LlmSettings], contextlib.AbstractAsyncContextManager[str]]
Add = Callable[..., Awaitable[Any]]
Json = dict[str, Any]
# 15 tokens of prompt by the estimate (43 bytes of JSON / 3) + max_tokens 100: 115 reserved;
# the fake then reports 10 + 5 = 15 used
HI: Json = {
    "model": "auto",
    "messages": [{"role": "user", "content": "hi"}],
    "stream": False,
    "options": {"num_predict": 100},
}
RESERVED, USED = 115, 15


def _settings(base: LlmSettings, **budgets: Any) -> LlmSettings:
    # model_validate, not model_copy: the settings' own validators (hub states merged) run
    return LlmSettings.model_validate(base.model_dump() | budgets)


@contextlib.asynccontextmanager
async def _registry(
    serve: Serve, settings: LlmSettings, token: str, fake: FakeLLM, add: Add, provider: str
) -> AsyncGenerator[httpx.AsyncClient]:
    async with (
        serve(settings) as url,
        httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as api,
    ):
        classes = ["claude"] if provider == "anthropic" else ["local"]
        with contextlib.suppress(AssertionError):  # a second registry on the same DB: added
            await add(api, fake.name, provider, fake.url, classes=classes, api_key="sk-test")
        await api.post(f"/api/llm/endpoints/{fake.name}/check")
        yield api


async def _budgets(api: httpx.AsyncClient) -> dict[str, Json]:
    costs = (await api.get("/api/llm/costs")).json()
    return {b["scope"]: b for b in costs["budgets"]}


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def agent_token(engine: AsyncEngine) -> str:
    return (await auth.issue(engine, auth.Role.AGENT, "agent w1")).token


async def test_a_header_cannot_choose_the_budget_the_token_does(
    fake: Fake,
    llm_settings: LlmSettings,
    admin_token: str,
    agent_token: str,
    serve_registry: Serve,
    add_endpoint: Add,
) -> None:
    server = await fake("a")
    async with _registry(
        serve_registry, llm_settings, admin_token, server, add_endpoint, "ollama"
    ) as api:
        for path in ("/api/chat", "/v1/chat/completions"):
            for token in (admin_token, agent_token):
                picked = await api.post(
                    path,
                    json=HI,
                    headers=_as(token) | {"X-Agentcom-Caller-Class": "unlimited"},
                )
                assert picked.status_code == 422, picked.text
                assert picked.json()["field"] == "X-Agentcom-Caller-Class"
        goal = await api.post(
            "/api/chat", json=HI, headers=_as(agent_token) | {"X-Agentcom-Goal": "g1"}
        )
        assert (goal.status_code, goal.json()["error"]) == (403, "goal_not_allowed")
        assert len(server.chats) == 0  # nothing refused reached the model

        assert (await api.post("/api/chat", json=HI, headers=_as(agent_token))).status_code == 200
        assert (await api.post("/api/chat", json=HI)).status_code == 200  # the admin: the hub
        budgets = await _budgets(api)
        assert set(budgets) == {"agent:w1", "hub:resting"}
        assert budgets["agent:w1"]["tokens"] == USED  # settled to the real use, not the estimate
        assert budgets["agent:w1"]["max_tokens"] == 10_000_000  # the default agent budget


async def test_an_agents_token_budget_counts_real_use_and_refuses_naming_it(
    fake: Fake,
    llm_settings: LlmSettings,
    admin_token: str,
    agent_token: str,
    serve_registry: Serve,
    add_endpoint: Add,
) -> None:
    server = await fake("a")
    settings = _settings(llm_settings, llm_agent_budget={"tokens": 240})
    async with _registry(
        serve_registry, settings, admin_token, server, add_endpoint, "ollama"
    ) as api:
        agent = _as(agent_token)
        # each call reserves 115 and keeps 15: nine fit under 240 (8 * 15 + 115 = 235)
        for _ in range(9):
            assert (await api.post("/api/chat", json=HI, headers=agent)).status_code == 200
        refused = await api.post("/api/chat", json=HI, headers=agent)
        assert refused.status_code == 429, refused.text
        body = refused.json()
        assert body["error"] == "budget_exhausted"
        assert body["budget"]["scope"] == "agent:w1"
        assert body["budget"]["limit"] == {"tokens": 240, "usd": None}
        assert body["budget"]["used"]["tokens"] == 9 * USED
        assert body["budget"]["requested"]["tokens"] == RESERVED
        assert "budget agent:w1 has used 135 of 240 tokens" in body["detail"]
        assert 0 < body["retry_after"] <= 86400  # until the day's window closes
        assert int(refused.headers["Retry-After"]) >= 1
        assert len(server.chats) == 9
        assert (await api.post("/api/chat", json=HI)).status_code == 200  # the hub's is its own

        too_big = await api.post(
            "/api/chat", json=HI | {"options": {"num_predict": 1000}}, headers=agent
        )
        assert too_big.status_code == 429
        assert "more than the whole budget" in too_big.json()["detail"]
        assert "Retry-After" not in too_big.headers  # waiting would not help


async def test_a_usd_budget_reserves_at_the_claude_price(
    fake: Fake,
    llm_settings: LlmSettings,
    admin_token: str,
    agent_token: str,
    serve_registry: Serve,
    add_endpoint: Add,
) -> None:
    claude = await fake("claude", models=["claude-sonnet-4-5-20250929"])
    settings = _settings(llm_settings, llm_agent_budget={"usd": 0.002})
    async with _registry(
        serve_registry, settings, admin_token, claude, add_endpoint, "anthropic"
    ) as api:
        agent = _as(agent_token)
        reserved = (15 * 3.0 + 100 * 15.0) / 1e6  # $0.001545 at $3 / $15 per million
        used = (10 * 3.0 + 5 * 15.0) / 1e6  # $0.000105
        # a call fits while (calls before) * used + reserved <= 0.002: five
        for _ in range(5):
            assert (await api.post("/api/chat", json=HI, headers=agent)).status_code == 200
        refused = await api.post("/api/chat", json=HI, headers=agent)
        assert refused.status_code == 429, refused.text
        budget = refused.json()["budget"]
        assert budget["used"]["usd"] == pytest.approx(5 * used)
        assert budget["requested"]["usd"] == pytest.approx(reserved)
        assert budget["limit"] == {"tokens": None, "usd": 0.002}


async def test_concurrent_calls_never_reserve_past_the_limit(
    fake: Fake,
    llm_settings: LlmSettings,
    admin_token: str,
    agent_token: str,
    serve_registry: Serve,
    add_endpoint: Add,
) -> None:
    # the calls let through are held at the model until all 30 have been answered or held, so
    # none settles early: exactly the reservations that fit under 1000 tokens pass (8 * 115)
    hold = asyncio.Event()
    server = await fake("a", hold=hold)
    settings = _settings(llm_settings, llm_agent_budget={"tokens": 1000})
    async with _registry(
        serve_registry, settings, admin_token, server, add_endpoint, "ollama"
    ) as api:
        agent = _as(agent_token)
        calls = [
            asyncio.create_task(api.post("/api/chat", json=HI, headers=agent)) for _ in range(30)
        ]

        async def decided() -> None:
            done = [c for c in calls if c.done()]
            assert len(done) == 22
            assert len(server.chats) == 8

        try:
            await eventually(decided, timeout=30)
            assert all(c.result().status_code == 429 for c in calls if c.done())
            assert (await _budgets(api))["agent:w1"]["tokens"] == 8 * RESERVED  # <= 1000
        finally:
            hold.set()
            replies = await asyncio.gather(*calls)
        assert sorted(r.status_code for r in replies) == [200] * 8 + [429] * 22
        assert (await _budgets(api))["agent:w1"]["tokens"] == 8 * USED


async def test_a_failed_call_releases_its_reservation(
    fake: Fake,
    llm_settings: LlmSettings,
    admin_token: str,
    agent_token: str,
    serve_registry: Serve,
    add_endpoint: Add,
) -> None:
    server = await fake("a")
    settings = _settings(llm_settings, llm_agent_budget={"tokens": 200})
    async with _registry(
        serve_registry, settings, admin_token, server, add_endpoint, "ollama"
    ) as api:
        server.status = 500
        for _ in range(2):  # each reserves 115 of 200: without the release the second is a 429
            failed = await api.post("/api/chat", json=HI, headers=_as(agent_token))
            assert failed.status_code == 502, failed.text
        assert (await _budgets(api))["agent:w1"]["tokens"] == 0


async def test_budgets_survive_a_restart(
    fake: Fake,
    llm_settings: LlmSettings,
    admin_token: str,
    agent_token: str,
    serve_registry: Serve,
    add_endpoint: Add,
) -> None:
    server = await fake("a")
    settings = _settings(llm_settings, llm_agent_budget={"tokens": 130})
    async with _registry(
        serve_registry, settings, admin_token, server, add_endpoint, "ollama"
    ) as api:
        for _ in range(2):  # 115 reserved, 15 kept; then 15 + 115 = 130 <= 130
            assert (
                await api.post("/api/chat", json=HI, headers=_as(agent_token))
            ).status_code == 200
    async with _registry(
        serve_registry, settings, admin_token, server, add_endpoint, "ollama"
    ) as api:
        refused = await api.post("/api/chat", json=HI, headers=_as(agent_token))
        assert refused.status_code == 429, refused.text
        assert refused.json()["budget"]["used"]["tokens"] == 2 * USED


async def test_a_window_closes_and_the_refusal_says_when(
    fake: Fake,
    llm_settings: LlmSettings,
    admin_token: str,
    agent_token: str,
    serve_registry: Serve,
    add_endpoint: Add,
) -> None:
    server = await fake("a")
    settings = _settings(
        llm_settings, llm_agent_budget={"tokens": 120}, llm_budget_window=timedelta(seconds=2)
    )
    async with _registry(
        serve_registry, settings, admin_token, server, add_endpoint, "ollama"
    ) as api:
        agent = _as(agent_token)
        refused: list[httpx.Response] = []

        async def one_refused() -> None:  # 115 fits, 15 + 115 does not, until the window closes
            resp = await api.post("/api/chat", json=HI, headers=agent)
            assert resp.status_code == 429, resp.text
            refused.append(resp)

        await eventually(one_refused, timeout=20)
        assert 0 < refused[0].json()["retry_after"] <= 2
        assert refused[0].headers["Retry-After"] in ("1", "2")

        async def allowed() -> None:
            assert (await api.post("/api/chat", json=HI, headers=agent)).status_code == 200

        await eventually(allowed, timeout=20)


async def test_a_goal_named_by_the_hub_has_its_own_budget(
    fake: Fake,
    llm_settings: LlmSettings,
    admin_token: str,
    serve_registry: Serve,
    add_endpoint: Add,
) -> None:
    server = await fake("a")
    settings = _settings(llm_settings, llm_goal_budget={"tokens": 130})
    async with _registry(
        serve_registry, settings, admin_token, server, add_endpoint, "ollama"
    ) as api:
        g1 = {"X-Agentcom-Goal": "g1"}
        for _ in range(2):
            assert (await api.post("/api/chat", json=HI, headers=g1)).status_code == 200
        refused = await api.post("/v1/chat/completions", json=HI | {"max_tokens": 100}, headers=g1)
        assert refused.status_code == 429, refused.text
        assert refused.json()["budget"]["scope"] == "goal:g1"
        assert refused.json()["error"]["code"] == "budget_exhausted"  # OpenAI's shape too
        assert (
            await api.post("/api/chat", json=HI, headers={"X-Agentcom-Goal": "g2"})
        ).status_code == 200
        assert (await api.post("/api/chat", json=HI)).status_code == 200
        bad = await api.post("/api/chat", json=HI, headers={"X-Agentcom-Goal": "no spaces"})
        assert (bad.status_code, bad.json()["field"]) == (422, "X-Agentcom-Goal")
        costs = (await api.get("/api/llm/costs", params={"group_by": "caller_class"})).json()
        assert {r["key"]: r["calls"] for r in costs["rows"]} == {"hub:resting": 4}


async def test_the_hubs_calls_pay_into_the_budget_of_the_state_it_announced(
    fake: Fake,
    llm_settings: LlmSettings,
    admin_token: str,
    serve_registry: Serve,
    add_endpoint: Add,
    js: JetStreamContext,
    nc: Client,
) -> None:
    server = await fake("a")
    settings = _settings(llm_settings, llm_hub_budgets={"executing": {"tokens": 120}})
    assert settings.llm_hub_budgets[HubState.RESTING].tokens == 1_000_000  # unnamed: the default

    async def announce(state: HubState) -> None:
        event = HubStateChanged(state=state, at=clock.now())
        await js.publish(subjects.HUB_STATE_CHANGED, event.model_dump_json().encode())

    async with _registry(
        serve_registry, settings, admin_token, server, add_endpoint, "ollama"
    ) as api:
        await announce(HubState.EXECUTING)

        async def executing() -> None:
            await api.post("/api/chat", json=HI)
            assert "hub:executing" in await _budgets(api)

        await eventually(executing)
        refused = await api.post("/api/chat", json=HI)
        assert refused.status_code == 429, refused.text
        assert refused.json()["budget"]["scope"] == "hub:executing"
        # over NATS (the hub's own path) the same budget, the same refusal
        request = {"messages": HI["messages"], "options": {"max_tokens": 100}}
        nats_refused = await nc.request(
            "agentcom.rpc.llm.chat", json.dumps(request).encode(), timeout=5
        )
        assert nats_refused.headers is not None
        assert nats_refused.headers["Nats-Service-Error-Code"] == "budget_exhausted"
        assert int(nats_refused.headers["Retry-After"]) > 80000  # the day's window
        old = await nc.request(
            "agentcom.rpc.llm.chat",
            json.dumps(request | {"caller_class": "unlimited"}).encode(),
            timeout=5,
        )
        assert old.headers is not None
        assert old.headers["Nats-Service-Error-Code"] == "invalid_field"

        await announce(HubState.IMPROVING)

        async def improving() -> None:
            assert (await api.post("/api/chat", json=HI)).status_code == 200
            assert "hub:improving" in await _budgets(api)

        await eventually(improving)
    # a registry started later reads the hub's newest state from the stream
    async with _registry(
        serve_registry, settings, admin_token, server, add_endpoint, "ollama"
    ) as api:
        reply = await nc.request(
            "agentcom.rpc.llm.chat",
            json.dumps(request | {"goal_id": "g7"}).encode(),
            timeout=5,
        )
        assert not (reply.headers and "Nats-Service-Error-Code" in reply.headers), reply.headers
        budgets = await _budgets(api)
        assert budgets["hub:improving"]["tokens"] == 2 * USED
        assert budgets["goal:g7"]["tokens"] == USED


async def test_max_tokens_is_reserved_and_sent_upstream(
    fake: Fake, api: httpx.AsyncClient, register: Callable[..., Awaitable[Json]]
) -> None:
    server = await fake("a")
    await register("a", "ollama", server.url, classes=["local"])
    plain = {"model": "auto", "messages": HI["messages"], "stream": False}
    assert (await api.post("/api/chat", json=plain)).status_code == 200
    assert server.chats[-1]["options"]["num_predict"] == 4096  # the reserved default, enforced
    for bad in ({"options": {"num_predict": -1}}, {"options": {"num_predict": "9"}}):
        resp = await api.post("/api/chat", json=plain | bad)
        assert (resp.status_code, resp.json()["field"]) == (422, "max_tokens"), resp.text


async def test_the_chat_routes_declare_every_status_they_answer(api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json")).json()
    for path, problem in (
        ("/api/chat", "/BudgetProblem"),
        ("/v1/chat/completions", "/OpenAIBudgetProblem"),  # with OpenAI's `error` object
    ):
        responses = spec["paths"][path]["post"]["responses"]
        assert {"400", "401", "403", "422", "429", "502", "503"} <= set(responses)
        schema = responses["429"]["content"]["application/json"]["schema"]["$ref"]
        assert schema.endswith(problem)
        headers = {p["name"] for p in spec["paths"][path]["post"]["parameters"]}
        assert headers == {"X-Agentcom-Tier", "X-Agentcom-Goal"}  # no caller class


async def test_a_streamed_call_is_settled_when_it_ends(
    fake: Fake,
    llm_settings: LlmSettings,
    admin_token: str,
    agent_token: str,
    serve_registry: Serve,
    add_endpoint: Add,
) -> None:
    server = await fake("a")
    async with _registry(
        serve_registry, llm_settings, admin_token, server, add_endpoint, "ollama"
    ) as api:
        agent = _as(agent_token)
        ollama = HI | {"stream": True}
        async with api.stream("POST", "/api/chat", json=ollama, headers=agent) as resp:
            lines = [json.loads(line) async for line in resp.aiter_lines() if line]
        assert lines[-1]["done"] is True
        openai = {"messages": HI["messages"], "max_tokens": 100, "stream": True}
        async with api.stream("POST", "/v1/chat/completions", json=openai, headers=agent) as resp:
            assert (await resp.aread()).endswith(b"data: [DONE]\n\n")

        async def settled() -> None:  # after the response: the reservation of 115 is gone
            assert (await _budgets(api))["agent:w1"]["tokens"] == 2 * USED

        await eventually(settled)
