"""Live reports (progress, tool calls, recovering), heartbeat resources, rate limits and the
cut-off for agents that keep sending garbage."""

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import nats
import pytest
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common.settings import CommonSettings
from agentcom_common.testing import NatsServer, eventually, running
from agentcom_queue.app import create_app as queue_app
from agentcom_scheduler.app import create_app
from agentcom_scheduler.settings import SchedulerSettings

LIMITS = {
    "scheduler_rate_light": 3,
    "scheduler_rate_normal": 3,
    "scheduler_rate_heavy": 5,
    "scheduler_validation_limit": 3,
    "scheduler_validation_cooldowns": (timedelta(minutes=5),),
}


@pytest.fixture
async def queue(settings: CommonSettings, admin_token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with running(queue_app(settings), "http://queue") as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        yield client


@pytest.fixture
async def api(
    settings: CommonSettings, nats_server: NatsServer, admin_token: str
) -> AsyncIterator[httpx.AsyncClient]:
    own = SchedulerSettings.model_validate(
        settings.model_dump()
        | LIMITS
        | {
            "scheduler_nats_issuer_seed": nats_server.auth.issuer_seed,
            "scheduler_sweep_interval": timedelta(milliseconds=20),
        }
    )
    async with running(create_app(own), "http://scheduler") as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        yield client


async def holding(
    api: httpx.AsyncClient, queue: httpx.AsyncClient, js: JetStreamContext, agent: str
) -> dict[str, Any]:
    """Register `agent` and give it a task the real way (hello, matched, accepted, started):
    live reports are republished only for the agent's current assignment."""
    await api.post("/api/agents", json={"name": agent})
    inbox = await js.pull_subscribe(
        f"agentcom.agent.{agent}.inbox", durable=f"agent-{agent}", stream="INBOX"
    )
    await send(js, agent, {"kind": "hello"})
    await queue.post("/api/tasks", json={"description": "live"})
    [assign] = await inbox.fetch(1, timeout=10)
    await assign.ack()
    body = json.loads(assign.data)
    held = {"task_id": body["task"]["id"], "generation": body["generation"]}
    await send(js, agent, held | {"kind": "accepted"})
    [start] = await inbox.fetch(1, timeout=10)
    await start.ack()
    assert json.loads(start.data)["kind"] == "start"
    return held


async def send(js: JetStreamContext, agent: str, body: dict[str, Any]) -> None:
    await js.publish(
        f"agentcom.agent.{agent}.report", json.dumps(body | {"agent_id": agent}).encode()
    )


async def all_handled(js: JetStreamContext) -> None:
    info = await js.consumer_info("REPORTS", "scheduler-presence")
    assert (info.num_pending, info.num_ack_pending) == (0, 0)


async def test_progress_and_tool_calls_of_its_task_become_task_events_and_count_as_presence(
    api: httpx.AsyncClient, queue: httpx.AsyncClient, nc: Client, js: JetStreamContext
) -> None:
    held = await holding(api, queue, js, "busy")
    events = await nc.subscribe("agentcom.evt.task.*")  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
    step = held | {"seq": 0}
    await send(js, "busy", step | {"kind": "progress", "lines": ["compiling"], "stage": "build"})
    call = {"tool": "read_file", "ok": True, "duration_ms": 3.5, "arguments": "a.py"}
    await send(js, "busy", step | {"kind": "tool_call"} | call)

    first = await events.next_msg(timeout=10)
    second = await events.next_msg(timeout=10)
    assert first.subject == "agentcom.evt.task.progress"
    assert json.loads(first.data)["lines"] == ["compiling"]
    assert second.subject == "agentcom.evt.task.tool_call"
    assert json.loads(second.data)["tool"] == "read_file"

    async def seen() -> None:
        view = (await api.get("/api/agents/busy")).json()
        assert (view["state"], view["last_seen"] is not None) == ("working", True)

    await eventually(seen)


async def test_an_agent_cannot_write_into_another_tasks_live_stream(
    api: httpx.AsyncClient, queue: httpx.AsyncClient, nc: Client, js: JetStreamContext
) -> None:
    """Its own subject, another task's id (or its own task at an old generation): dropped."""
    victim = await holding(api, queue, js, "victim")
    await api.post("/api/agents", json={"name": "forger"})
    events = await nc.subscribe("agentcom.evt.task.*")  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
    forged = victim | {"seq": 0, "kind": "progress", "lines": ["rm -rf / done"]}
    await send(js, "forger", forged)
    call = {"tool": "shell", "ok": True, "duration_ms": 1, "kind": "tool_call", "seq": 1}
    await send(js, "forger", victim | call)
    await send(js, "victim", forged | {"generation": victim["generation"] + 1})
    await send(js, "victim", victim | {"seq": 2, "kind": "progress", "lines": ["real"]})

    only = await events.next_msg(timeout=10)
    assert json.loads(only.data)["lines"] == ["real"], only.data
    await eventually(lambda: all_handled(js))
    await nc.flush()
    assert events.pending_msgs == 0


async def test_a_heartbeat_shows_the_hosts_resources_and_recovering_is_accepted(
    api: httpx.AsyncClient, js: JetStreamContext
) -> None:
    await api.post("/api/agents", json={"name": "gpu-host"})
    beat = {
        "kind": "heartbeat",
        "cpu_percent": 12.5,
        "ram_percent": 40,
        "vram_percent": 80,
        "load": 1.5,
        "host": "box-1",
        "gpus": [{"name": "rtx", "memory_used_mb": 100, "memory_total_mb": 8000}],
        "models": ["qwen3:8b"],
    }
    await send(js, "gpu-host", beat)
    await send(js, "gpu-host", {"kind": "recovering", "task_id": "t9", "generation": 2})

    async def shown() -> None:
        view = (await api.get("/api/agents/gpu-host")).json()
        assert view["resources"] is not None
        assert view["resources"]["cpu_percent"] == 12.5
        assert view["resources"]["host"] == "box-1"
        assert view["resources"]["gpus"][0]["memory_total_mb"] == 8000
        assert view["resources"]["models"] == ["qwen3:8b"]
        assert view["last_seen"] is not None

    await eventually(shown)
    await eventually(lambda: all_handled(js))
    history = (await api.get("/api/agents/gpu-host/history")).json()
    assert [h["reason"] for h in history] == ["registered", "heartbeat"]


async def test_a_batch_whose_gate_failed_is_retried_by_the_policy_not_the_ack_wait(
    api: httpx.AsyncClient, js: JetStreamContext, engine: AsyncEngine
) -> None:
    """The batch's gate (cut-offs and heartbeat tokens, one statement) cannot run: its reports
    are nak'd with the consumer policy's delay (1 s first), so they apply soon after the
    database answers again, not after JetStream's ack wait (30 s) for reports left unanswered."""
    await api.post("/api/agents", json={"name": "steady"})
    async with engine.begin() as conn:  # the gate's statement reads this table
        await conn.execute(text("ALTER TABLE scheduler.cutoffs RENAME TO cutoffs_away"))
    await send(js, "steady", {"kind": "heartbeat", "host": "box-2"})

    async def redelivered() -> None:
        info = await js.consumer_info("REPORTS", "scheduler-presence")
        assert (info.num_redelivered or 0) >= 1

    await eventually(redelivered)  # the gate failed at least once
    async with engine.begin() as conn:
        await conn.execute(text("ALTER TABLE scheduler.cutoffs_away RENAME TO cutoffs"))

    async def applied() -> None:
        view = (await api.get("/api/agents/steady")).json()
        assert view["resources"] is not None
        assert view["resources"]["host"] == "box-2"

    await eventually(applied)
    await eventually(lambda: all_handled(js))


async def test_progress_over_the_agents_rate_is_dropped_but_outcomes_never_are(
    api: httpx.AsyncClient, queue: httpx.AsyncClient, nc: Client, js: JetStreamContext
) -> None:
    held = await holding(api, queue, js, "chatty")
    events = await nc.subscribe("agentcom.evt.task.progress")  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
    for seq in range(12):
        step = held | {"seq": seq}
        await send(js, "chatty", step | {"kind": "progress", "lines": [str(seq)]})

    await eventually(lambda: all_handled(js))
    await nc.flush()
    delivered = events.pending_msgs
    assert 3 <= delivered < 12  # a bucket of 3 a minute, refilled while the test runs


async def test_an_agent_token_is_rate_limited_and_an_admin_can_raise_its_rate(
    api: httpx.AsyncClient,
) -> None:
    made = (await api.post("/api/agents", json={"name": "poller"})).json()
    as_agent = {"Authorization": f"Bearer {made['token']}"}

    codes = [(await api.get("/api/agents", headers=as_agent)).status_code for _ in range(6)]

    assert codes[:3] == [200, 200, 200]
    assert 429 in codes[3:]
    limited = await api.get("/api/scheduler/stats", headers=as_agent)
    assert limited.json()["error"] == "rate_limited"
    assert "retry_after_ms" in limited.json()["detail"]
    retry_after = limited.json()["retry_after"]
    assert isinstance(retry_after, float)
    assert 0 < retry_after <= 60  # a bucket of 3/min refills one token in at most 20 s
    assert int(limited.headers["Retry-After"]) >= max(1, retry_after)

    raised = await api.put("/api/agents/poller/rate-limits", json={"light": 1000})
    assert raised.json() == {
        "schema_version": 1,
        "agent_id": "poller",
        "light": 1000,
        "normal": 3,
        "heavy": 5,
        "overridden": True,
    }
    assert (await api.get("/api/agents", headers=as_agent)).status_code == 200
    own = await api.put("/api/agents/poller/rate-limits", json={"light": 9}, headers=as_agent)
    assert own.status_code == 403
    bad = await api.put("/api/agents/poller/rate-limits", json={"light": 0})
    assert (bad.status_code, bad.json()["field"]) == (422, "light")
    assert (await api.get("/api/agents/nobody/rate-limits")).status_code == 404


async def test_repeated_garbage_cuts_an_agent_off_its_reports_and_its_nats_login(
    api: httpx.AsyncClient, js: JetStreamContext, nats_server: NatsServer
) -> None:
    made = (await api.post("/api/agents", json={"name": "noisy"})).json()
    password: str = made["nats_password"]
    agent = await nats.connect(  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
        nats_server.address, user="noisy", password=password, allow_reconnect=False
    )
    for _ in range(3):
        await js.publish("agentcom.agent.noisy.report", b'{"kind": "nonsense"}')

    async def kicked() -> None:
        assert agent.is_closed

    await eventually(kicked)
    await send(js, "noisy", {"kind": "hello"})  # valid, but it is cut off for now
    await eventually(lambda: all_handled(js))
    assert (await api.get("/api/agents/noisy")).json()["state"] == "offline"
    again = Client()

    async def quiet(_exc: Exception) -> None:
        return None

    try:
        with pytest.raises(NatsError, match="Authorization Violation"):
            await again.connect(
                nats_server.address,
                allow_reconnect=False,
                max_reconnect_attempts=0,
                error_cb=quiet,
                user="noisy",
                password=password,
            )
    finally:
        await again.close()


def test_an_empty_list_of_cooldowns_is_refused_with_the_setting_named() -> None:
    with pytest.raises(ValidationError, match="scheduler_validation_cooldowns"):
        SchedulerSettings(scheduler_validation_cooldowns=())


async def test_an_outcome_sent_while_cut_off_is_held_and_delivered_again_after_it(
    settings: CommonSettings, nats_server: NatsServer, admin_token: str, js: JetStreamContext
) -> None:
    short = SchedulerSettings.model_validate(
        settings.model_dump()
        | LIMITS
        | {
            "scheduler_nats_issuer_seed": nats_server.auth.issuer_seed,
            "scheduler_validation_cooldowns": (timedelta(milliseconds=300),),
        }
    )
    async with running(create_app(short), "http://scheduler") as api:
        api.headers["Authorization"] = f"Bearer {admin_token}"
        await api.post("/api/agents", json={"name": "noisy"})
        for _ in range(3):
            await js.publish("agentcom.agent.noisy.report", b'{"kind": "nonsense"}')
        await eventually(lambda: all_handled(js))
        outcome = {"kind": "completed", "task_id": "task-00000000000000aa", "generation": 1}
        await send(js, "noisy", outcome)

        async def delivered_again() -> None:
            info = await js.consumer_info("REPORTS", "scheduler-presence")
            assert (info.num_redelivered or 0) >= 1  # held through the cut-off, not terminated

        await eventually(delivered_again)
