"""Health, discovery, scoring, fallback, circuit breaker, ledger: the registry's behaviour
(budgets: test_budgets.py)."""

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from agentcom_common.testing import eventually
from agentcom_llm_registry.settings import LlmSettings
from fake_llm import FakeLLM

Fake = Callable[..., Awaitable[FakeLLM]]
Register = Callable[..., Awaitable[dict[str, Any]]]
Serve = Callable[[LlmSettings], contextlib.AbstractAsyncContextManager[str]]
HI = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "stream": False}


async def _endpoint(api: httpx.AsyncClient, endpoint_id: str) -> dict[str, Any]:
    resp = await api.get(f"/api/llm/endpoints/{endpoint_id}")
    assert resp.status_code == 200, resp.text
    return resp.json()


async def test_health_goes_unhealthy_after_failures_and_recovers(
    fake: Fake, api: httpx.AsyncClient, register: Register, js: JetStreamContext
) -> None:
    server = await fake("a")
    await register("a", "ollama", server.url, classes=["local"])
    sub = await js.subscribe("agentcom.evt.llm.endpoint_health_changed")
    server.health_status = 500

    async def unhealthy() -> None:
        got = await _endpoint(api, "a")
        assert got["health"] == "unhealthy"
        assert got["consecutive_failures"] >= 2

    await eventually(unhealthy)
    refused = await api.post("/api/chat", json=HI)
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"] == "no_endpoint_available"
    assert "unhealthy" in refused.json()["detail"]

    server.health_status = 200

    async def healthy() -> None:
        assert (await _endpoint(api, "a"))["health"] == "healthy"

    await eventually(healthy)
    seen = [json.loads((await sub.next_msg(timeout=5)).data)["health"] for _ in range(3)]
    assert seen == ["healthy", "unhealthy", "healthy"]  # first check, failures, recovery


async def test_discovery_finds_models_and_warm_ones(
    fake: Fake, api: httpx.AsyncClient, register: Register
) -> None:
    server = await fake("a", models=["qwen3:8b", "llama3:8b"], warm=["llama3:8b"])
    got = await register("a", "ollama", server.url, classes=["local"])
    assert got["models"] == ["qwen3:8b", "llama3:8b"]
    assert got["warm_models"] == ["llama3:8b"]
    # the warm model is chosen for the class, and the reason says so
    route = (await api.get("/api/llm/route", params={"tier": "standard"})).json()
    assert (route["endpoint_id"], route["model"]) == ("a", "llama3:8b")
    assert "warm" in route["reason"]
    server.warm = ["qwen3:8b"]
    await api.post("/api/llm/endpoints/a/check")
    route = (await api.get("/api/llm/route", params={"tier": "standard"})).json()
    assert route["model"] == "qwen3:8b"


async def test_scoring_spreads_load_between_two_equal_endpoints(
    fake: Fake, api: httpx.AsyncClient, register: Register
) -> None:
    # Every call is held at the fakes until all 20 are in flight, so none has finished (no
    # latency measured) when the next is routed: in-flight counts and recency alone decide, and
    # the split is exact. Before, calls finished while others were still being routed, and one
    # latency measured under load (a TCP connect, a stalled loop) could push an endpoint out of
    # the 10 % tie band, so it lost pick after pick and the test flaked. One call after
    # another, where measured latency decides too: test_registry.py, with latencies set.
    hold = asyncio.Event()
    one = await fake("one", delay=0.05, hold=hold)
    two = await fake("two", delay=0.05, hold=hold)
    await register("one", "ollama", one.url, classes=["local"])
    await register("two", "ollama", two.url, classes=["local"])
    calls = [asyncio.create_task(api.post("/api/chat", json=HI)) for _ in range(20)]

    async def all_in_flight() -> None:
        assert len(one.chats) + len(two.chats) == 20

    try:
        await eventually(all_in_flight)
        metrics = (await api.get("/api/llm/metrics")).json()
        assert (metrics["one"]["in_flight"], metrics["two"]["in_flight"]) == (10, 10)
    finally:
        hold.set()
        replies = await asyncio.gather(*calls)
    assert all(r.status_code == 200 for r in replies)
    assert (len(one.chats), len(two.chats)) == (10, 10)
    metrics = (await api.get("/api/llm/metrics")).json()
    assert metrics["one"]["calls"] + metrics["two"]["calls"] == 20
    assert metrics["one"]["in_flight"] == metrics["two"]["in_flight"] == 0
    assert metrics["one"]["latency_p50_ms"] >= 50  # the fake's delay, measured per endpoint


async def test_a_busy_host_scores_lower(
    fake: Fake, api: httpx.AsyncClient, register: Register, js: JetStreamContext
) -> None:
    one, two = await fake("one"), await fake("two")
    await register("one", "ollama", one.url, classes=["local"], host="box1")
    await register("two", "ollama", two.url, classes=["local"], host="box2")
    for agent, host, cpu in (("ag1", "box1", 95.0), ("ag2", "box2", 5.0)):
        beat = {"kind": "heartbeat", "agent_id": agent, "host": host, "cpu_percent": cpu}
        await js.publish(f"agentcom.agent.{agent}.report", json.dumps(beat).encode())

    async def joined() -> None:
        got = await _endpoint(api, "one")
        assert got["resources"] is not None
        assert got["resources"]["cpu_percent"] == 95.0

    await eventually(joined)
    for _ in range(3):  # stays on the idle host; recency alone would alternate
        route = (await api.get("/api/llm/route", params={"tier": "standard"})).json()
        assert route["endpoint_id"] == "two", route
        assert (await api.post("/api/chat", json=HI)).json()["routing"]["endpoint_id"] == "two"


async def test_fallback_escalates_through_endpoints_then_tiers(
    fake: Fake, api: httpx.AsyncClient, register: Register
) -> None:
    bad1, bad2, cloud = (
        await fake("bad1"),
        await fake("bad2"),
        await fake("cloud", models=["claude-x"]),
    )
    await register("bad1", "ollama", bad1.url, classes=["local"])
    await register("bad2", "openai", bad2.url + "/v1", classes=["local"])
    await register("cloud", "anthropic", cloud.url, classes=["claude"], api_key="sk-ant")
    bad1.status = bad2.status = 500
    resp = await api.post("/api/chat", json=HI | {"model": "standard"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["message"]["content"] == "cloud says: hi"
    routing = body["routing"]
    assert routing["fallback_used"] is True
    assert routing["attempts"] == 3
    assert routing["endpoint_id"] == "cloud"
    assert [c["endpoint_id"] for c in routing["candidates"][:3]] == [
        *sorted(
            ["bad1", "bad2"],
            key=lambda e: [c["endpoint_id"] for c in routing["candidates"]].index(e),
        ),
        "cloud",
    ]
    assert [c["outcome"].split(":")[0] for c in routing["candidates"][:3]] == [
        "failed",
        "failed",
        "chosen",
    ]
    assert "escalated from class local" in routing["reason"]
    assert len(bad1.chats) == len(bad2.chats) == len(cloud.chats) == 1
    # streamed too: falls back before the first piece is sent
    async with api.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": "standard", "messages": HI["messages"], "stream": True},
    ) as stream:
        lines = [line async for line in stream.aiter_lines() if line.startswith("data: {")]
    assert json.loads(lines[0][6:])["routing"]["endpoint_id"] == "cloud"


async def test_everything_failing_is_a_502_naming_each_attempt(
    fake: Fake, api: httpx.AsyncClient, register: Register
) -> None:
    bad = await fake("bad")
    await register("bad", "ollama", bad.url, classes=["local"])
    bad.status = 503
    resp = await api.post("/api/chat", json=HI)
    assert resp.status_code == 502
    assert resp.json()["error"] == "upstream_failed"
    assert "bad: failed: HTTP 503" in resp.json()["detail"]


async def test_circuit_opens_after_failures_and_closes_after_a_good_trial(
    fake: Fake, api: httpx.AsyncClient, register: Register
) -> None:
    flaky, spare = await fake("flaky"), await fake("spare")
    await register("flaky", "ollama", flaky.url, classes=["local"])
    await register("spare", "ollama", spare.url, classes=["local-small"])
    flaky.status = 500
    for _ in range(2):  # llm_circuit_failures = 2
        await api.post("/api/chat", json=HI | {"model": "standard"})
    assert (await _endpoint(api, "flaky"))["circuit"] == "open"
    calls = len(flaky.chats)
    resp = await api.post("/api/chat", json=HI | {"model": "trivial"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["routing"]["endpoint_id"] == "spare"
    skipped = {c["endpoint_id"]: c["outcome"] for c in resp.json()["routing"]["candidates"]}
    assert skipped["flaky"] == "skipped: circuit open"
    assert len(flaky.chats) == calls  # an open circuit sends nothing
    flaky.status = 200

    async def trial_closes_it() -> None:  # after llm_circuit_open one trial call goes through
        resp = await api.post("/api/chat", json=HI | {"model": "standard"})
        assert resp.status_code == 200, resp.text  # 503 while the circuit is still open
        assert resp.json()["routing"]["endpoint_id"] == "flaky", resp.text
        assert (await _endpoint(api, "flaky"))["circuit"] == "closed"

    await eventually(trial_closes_it)


async def test_bad_requests_name_the_field(api: httpx.AsyncClient) -> None:
    for body, field in (
        ({"model": "x"}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "user", "content": "x"}], "tools": [1]}, "tools"),
    ):
        resp = await api.post("/v1/chat/completions", json=body)
        assert resp.status_code == 422, resp.text
        assert resp.json()["field"] == field
    resp = await api.post(
        "/api/chat", json={"messages": [{"role": "user", "content": "x"}], "options": "hot"}
    )
    assert (resp.status_code, resp.json()["field"]) == (422, "options")
    bad_calls = [{"role": "assistant", "content": "", "tool_calls": "f"}]
    for path in ("/api/chat", "/v1/chat/completions"):
        resp = await api.post(path, json={"messages": bad_calls})
        assert (resp.status_code, resp.json()["field"]) == (422, "messages"), resp.text
    resp = await api.post("/api/chat", content=b"not json")
    assert (resp.status_code, resp.json()["field"]) == (422, "body")
    resp = await api.post(
        "/api/llm/endpoints", json={"id": "x", "provider": "gpt", "base_url": "http://h"}
    )
    assert (resp.status_code, resp.json()["field"]) == (422, "provider")
    resp = await api.get("/api/llm/route", params={"tier": "huge"})
    assert resp.status_code == 422


async def test_api_key_is_never_returned_or_logged(
    fake: Fake, api: httpx.AsyncClient, register: Register, caplog: pytest.LogCaptureFixture
) -> None:
    server = await fake("k")
    await register("k", "openai", server.url + "/v1", classes=["local"], api_key="sk-very-secret")
    server.health_status = 500
    await api.post("/api/llm/endpoints/k/check")
    texts = [
        (await api.get("/api/llm/endpoints")).text,
        (await api.get("/api/llm/endpoints/k")).text,
    ]
    assert all("sk-very-secret" not in t for t in texts)
    assert (await api.get("/api/llm/endpoints/k")).json()["has_api_key"] is True
    server.health_status = 200
    await api.post("/api/llm/endpoints/k/check")
    resp = await api.post(
        "/v1/chat/completions", json={"model": "auto", "messages": HI["messages"]}
    )
    assert resp.status_code == 200, resp.text
    assert server.chats[-1]["_headers"]["Authorization"] == "Bearer sk-very-secret"
    assert "sk-very-secret" not in resp.text
    assert "sk-very-secret" not in caplog.text


async def test_ledger_journal_left_by_a_crash_is_replayed_once(
    llm_settings: LlmSettings, engine: Any, serve_registry: Serve
) -> None:
    _leave_journal(Path(llm_settings.llm_ledger_dir or ""))
    for _ in range(2):  # a second start finds nothing left to replay
        async with serve_registry(llm_settings):
            pass
    from sqlalchemy import text

    async with engine.connect() as conn:
        count = (
            await conn.execute(text("select count(*) from llm.calls where id = 'crash1'"))
        ).scalar()
    assert count == 1


async def test_sidecar_heartbeat_registers_its_ollama(
    fake: Fake, api: httpx.AsyncClient, js: JetStreamContext
) -> None:
    local = await fake("local", models=["qwen3:8b"])
    await js.publish(
        "agentcom.agent.ag1.report", json.dumps({"kind": "hello", "agent_id": "ag1"}).encode()
    )
    beat = {
        "kind": "heartbeat",
        "agent_id": "ag1",
        "host": "box1",
        "ollama_url": local.url,
        "models": ["qwen3:8b"],
        "cpu_percent": 12.5,
        "vram_percent": 40.0,
        "gpus": [{"name": "rtx"}],
        "new_field_from_the_future": 1,
    }
    await js.publish("agentcom.agent.ag1.report", json.dumps(beat).encode())

    async def registered() -> None:
        got = await _endpoint(api, "sidecar-ag1")
        assert got["resources"]["vram_percent"] == 40.0
        assert (got["source"], got["owner"], got["shared"]) == ("sidecar:ag1", "ag1", False)

    await eventually(registered)
    # ag1's alone until an admin shares it (test_learnt_endpoints.py); then everyone's
    assert (await api.post("/api/llm/endpoints/sidecar-ag1/share")).status_code == 200

    async def healthy() -> None:
        assert (await _endpoint(api, "sidecar-ag1"))["health"] == "healthy"

    await eventually(healthy)
    resp = await api.post("/api/chat", json=HI)
    assert resp.json()["routing"]["endpoint_id"] == "sidecar-ag1"


async def test_nats_rpc_chat(fake: Fake, register: Register, nc: Client) -> None:
    server = await fake("a")
    await register("a", "ollama", server.url, classes=["local"])
    request = {
        "messages": [{"role": "user", "content": "plan"}],
        "tier": "standard",
    }
    reply = json.loads(
        (await nc.request("agentcom.rpc.llm.chat", json.dumps(request).encode(), timeout=5)).data
    )
    assert reply["content"] == "a says: plan"
    assert reply["routing"]["endpoint_id"] == "a"
    bad = await nc.request("agentcom.rpc.llm.chat", b'{"messages": []}', timeout=5)
    assert bad.headers is not None
    assert bad.headers["Nats-Service-Error-Code"] == "invalid_field"


async def test_routed_events_carry_the_decision(
    fake: Fake, api: httpx.AsyncClient, register: Register, js: JetStreamContext
) -> None:
    server = await fake("a")
    await register("a", "ollama", server.url, classes=["local"])
    sub = await js.subscribe("agentcom.evt.llm.routed")
    await api.post("/api/chat", json=HI)
    event = json.loads((await sub.next_msg(timeout=5)).data)
    assert event["caller_class"] == "hub:resting"  # an admin's call is the hub's
    assert event["routing"]["endpoint_id"] == "a"
    assert (event["tokens_in"], event["tokens_out"]) == (10, 5)


def _leave_journal(ledger_dir: Path) -> None:
    ledger_dir.mkdir(parents=True, exist_ok=True)
    row = {
        "id": "crash1",
        "at": "2026-01-01T00:00:00+00:00",
        "caller": "a",
        "caller_class": "agent",
        "endpoint_id": "e",
        "model": "m",
        "tier": "standard",
        "tokens_in": 7,
        "tokens_out": 3,
        "duration_ms": 1.0,
        "cost_usd": 0.0,
        "ok": True,
        "seq": 1,
        "routing": None,
    }
    # what a SIGKILLed process leaves: a rotated file not yet deleted and the current journal
    (ledger_dir / "1.jsonl").write_text(json.dumps(row) + "\n")
    (ledger_dir / "current.jsonl").write_text(json.dumps(row) + "\n" + '{"torn')


async def test_gateway_needs_an_agent_or_admin_token(
    fake: Fake, api: httpx.AsyncClient, register: Register, engine: Any
) -> None:
    from agentcom_common import auth

    server = await fake("a")
    await register("a", "ollama", server.url, classes=["local"])
    viewer = (await auth.issue(engine, auth.Role.VIEWER, "watcher")).token
    agent = (await auth.issue(engine, auth.Role.AGENT, "worker-1")).token
    for path in ("/api/chat", "/v1/chat/completions"):
        missing = await api.post(path, json=HI, headers={"Authorization": ""})
        code = missing.json().get("code") or missing.json()["error"]  # OpenAI: error is an object
        assert (missing.status_code, code) == (401, "missing_token")
        forbidden = await api.post(path, json=HI, headers={"Authorization": f"Bearer {viewer}"})
        assert forbidden.status_code == 403
        allowed = await api.post(path, json=HI, headers={"Authorization": f"Bearer {agent}"})
        assert allowed.status_code == 200, allowed.text
    assert server.chats[-1]["messages"][-1]["content"] == "hi"
    costs = (await api.get("/api/llm/costs", params={"group_by": "caller"})).json()
    assert {r["key"]: r["calls"] for r in costs["rows"]}["worker-1"] == 2


async def test_a_stream_cut_mid_way_ends_with_an_error_and_counts_as_failed(
    fake: Fake, api: httpx.AsyncClient, register: Register
) -> None:
    server = await fake("cut", break_streams=True)
    await register("cut", "ollama", server.url, classes=["local"])
    body = {"model": "auto", "messages": [{"role": "user", "content": "tell me more"}]}
    async with api.stream("POST", "/api/chat", json=body) as stream:
        lines = [json.loads(line) async for line in stream.aiter_lines() if line]
    assert lines[0].get("message", {}).get("content") == "cut says: t", (
        lines
    )  # first half, then the cut
    assert "upstream failed mid-stream" in lines[-1]["error"]
    assert not any(line.get("done") for line in lines)

    async def accounted() -> None:
        got = await _endpoint(api, "cut")
        assert (got["metrics"]["in_flight"], got["metrics"]["errors"]) == (0, 1)
        costs = (await api.get("/api/llm/costs", params={"group_by": "endpoint_id"})).json()
        assert [(r["key"], r["calls"], r["failed"]) for r in costs["rows"]] == [("cut", 1, 1)]

    await eventually(accounted)
