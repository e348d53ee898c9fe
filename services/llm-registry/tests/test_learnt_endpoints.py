"""What an agent can do to the registry through its heartbeats (issue 15): speak for itself only,
learn an endpoint that serves it alone until an admin shares it, and never hold up the
heartbeat consumer with a report that cannot be read."""

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import auth, subjects
from agentcom_common.testing import eventually
from fake_llm import FakeLLM

Fake = Callable[..., Awaitable[FakeLLM]]
Register = Callable[..., Awaitable[dict[str, Any]]]
CONSUMER = "llm-registry-heartbeats"


async def beat(js: JetStreamContext, speaker: str, **body: Any) -> None:
    """A heartbeat on `speaker`'s own subject (the only one its NATS user may publish on)."""
    payload = {"kind": "heartbeat", "agent_id": speaker} | body
    await js.publish(f"agentcom.agent.{speaker}.report", json.dumps(payload).encode())


@pytest.fixture
async def refused(nc: Client) -> AsyncIterator[list[dict[str, Any]]]:
    """Every `message_refused` record published from now on."""
    seen: list[dict[str, Any]] = []

    async def keep(msg: Msg) -> None:
        seen.append(json.loads(msg.data))

    sub = await nc.subscribe(subjects.MESSAGE_REFUSED, cb=keep)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
    yield seen
    await sub.unsubscribe()


async def agent_client(engine: AsyncEngine, base_url: str, agent_id: str) -> httpx.AsyncClient:
    """The gateway as agent `agent_id` calls it: with a token of role agent named as the
    scheduler names an agent's token."""
    issued = await auth.issue(engine, auth.Role.AGENT, f"agent {agent_id}")
    return httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {issued.token}"}, timeout=10
    )


async def all_read(js: JetStreamContext) -> None:
    info = await js.consumer_info("REPORTS", CONSUMER)
    assert (info.num_pending, info.num_ack_pending, info.num_redelivered) == (0, 0, 0), info


async def test_a_heartbeat_naming_another_agent_changes_nothing_of_that_agent(
    fake: Fake,
    api: httpx.AsyncClient,
    js: JetStreamContext,
    refused: list[dict[str, Any]],
) -> None:
    theirs, mine = await fake("theirs"), await fake("mine")
    await beat(js, "ag2", host="box2", ollama_url=theirs.url, models=["qwen3:8b"])

    async def learnt() -> None:
        got = (await api.get("/api/llm/endpoints/sidecar-ag2")).json()
        assert got.get("base_url") == theirs.url, got

    await eventually(learnt)
    # ag1, on its own subject, claims to be ag2 and names its own server
    forged = {"agent_id": "ag2", "host": "box2", "ollama_url": mine.url, "cpu_percent": 99.0}
    await js.publish(
        "agentcom.agent.ag1.report", json.dumps({"kind": "heartbeat"} | forged).encode()
    )

    async def refused_once() -> None:
        assert [(r["agent_id"], r["code"]) for r in refused] == [("ag1", "wrong_agent")]
        await all_read(js)

    await eventually(refused_once)
    got = (await api.get("/api/llm/endpoints/sidecar-ag2")).json()
    assert (got["base_url"], got["owner"]) == (theirs.url, "ag2")
    assert (await api.get("/api/llm/endpoints/sidecar-ag1")).status_code == 404


async def test_a_learnt_endpoint_serves_its_agent_alone_until_an_admin_shares_it(
    fake: Fake,
    api: httpx.AsyncClient,
    register: Register,
    js: JetStreamContext,
    engine: AsyncEngine,
    base_url: str,
) -> None:
    # ag1 advertises a model its server does not list, hoping to take other callers' traffic
    capture = await fake("capture", models=["qwen3:8b"])
    await beat(js, "ag1", host="box1", ollama_url=capture.url, models=["claude-sonnet-4.5"])

    async def learnt() -> None:
        got = (await api.get("/api/llm/endpoints/sidecar-ag1")).json()
        assert (got.get("owner"), got.get("shared")) == ("ag1", False), got

    await eventually(learnt)
    secret = {
        "model": "claude-sonnet-4.5",
        "messages": [{"role": "user", "content": "the admin's secret prompt"}],
        "stream": False,
    }
    admin_call = await api.post("/api/chat", json=secret)
    assert admin_call.status_code == 503, admin_call.text
    assert admin_call.json()["error"] == "no_endpoint_available"
    other = await agent_client(engine, base_url, "ag2")
    own = await agent_client(engine, base_url, "ag1")
    async with other, own:
        assert (await other.post("/api/chat", json=secret)).status_code == 503
        tags = (await other.get("/api/tags")).json()["models"]
        assert "claude-sonnet-4.5" not in [t["name"] for t in tags]
        assert capture.chats == []  # nobody else's prompt reached it
        mine = await own.post(
            "/api/chat", json=secret | {"messages": [{"role": "user", "content": "mine"}]}
        )
        assert mine.status_code == 200, mine.text  # its own calls may use its own server
        assert mine.json()["routing"]["endpoint_id"] == "sidecar-ag1"

    # unshared, it is never probed: a later endpoint is checked while it stays unknown
    control = await fake("control", models=["llama3:8b"])
    await register("control", "ollama", control.url, classes=["cloud"])
    assert (await api.get("/api/llm/endpoints/sidecar-ag1")).json()["health"] == "unknown"

    shared = await api.post("/api/llm/endpoints/sidecar-ag1/share")
    assert shared.status_code == 200, shared.text

    async def probed() -> None:
        got = (await api.get("/api/llm/endpoints/sidecar-ag1")).json()
        assert (got["shared"], got["health"], got["models"]) == (True, "healthy", ["qwen3:8b"])

    await eventually(probed)
    # shared, it serves what it lists itself, never the model its agent claimed
    assert (await api.post("/api/chat", json=secret)).status_code == 503
    qwen = secret | {"model": "qwen3:8b", "messages": [{"role": "user", "content": "hello"}]}
    routed = await api.post("/api/chat", json=qwen)
    assert routed.json()["routing"]["endpoint_id"] == "sidecar-ag1", routed.text

    # moved to another URL, it is the agent's own again
    await beat(js, "ag1", host="box1", ollama_url=control.url, models=["qwen3:8b"])

    async def unshared() -> None:
        got = (await api.get("/api/llm/endpoints/sidecar-ag1")).json()
        assert (got["base_url"], got["shared"]) == (control.url, False), got

    await eventually(unshared)
    manual = await api.post("/api/llm/endpoints/control/share")
    assert (manual.status_code, manual.json()["error"]) == (409, "not_learnt")
    assert (await api.post("/api/llm/endpoints/nope/share")).status_code == 404


async def test_a_heartbeat_too_deep_to_read_is_refused_once_and_the_next_one_is_read(
    fake: Fake,
    api: httpx.AsyncClient,
    register: Register,
    js: JetStreamContext,
    refused: list[dict[str, Any]],
) -> None:
    server = await fake("a")
    await register("a", "ollama", server.url, classes=["local"], host="box1")
    deep = (
        b'{"kind": "heartbeat", "agent_id": "ag1", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    )
    await js.publish("agentcom.agent.ag1.report", deep)
    await beat(js, "ag1", host="box1", cpu_percent=42.0)

    async def read() -> None:
        got = (await api.get("/api/llm/endpoints/a")).json()
        assert got["resources"] is not None, got
        assert got["resources"]["cpu_percent"] == 42.0, got
        assert [(r["agent_id"], r["code"], r["deliveries"]) for r in refused] == [
            ("ag1", "too_deep", 1)
        ]
        await all_read(js)

    await eventually(read)
