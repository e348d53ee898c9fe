"""The presence sweep (silence, unaccepted assignments, deadlines) runs on every scheduler
replica at once: each pass locks the rows it judges (`FOR UPDATE SKIP LOCKED` in one
transaction with the hand-back), so two replicas on one Postgres and one NATS judge an agent
once: one hand-back, one history entry, one deadline cancel."""

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from agentcom_common import micro
from agentcom_common.contracts.task import Claimed, ClaimTask
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import eventually, metric, running
from agentcom_queue.app import create_app as queue_app
from agentcom_scheduler.app import create_app
from agentcom_scheduler.settings import SchedulerSettings

pytestmark = pytest.mark.usefixtures("meters")


def fast(settings: CommonSettings, **extra: Any) -> SchedulerSettings:
    return SchedulerSettings.model_validate(
        settings.model_dump()
        | {
            "scheduler_heartbeat_interval": timedelta(seconds=1),
            "scheduler_missed_heartbeats": 3,
            # both replicas sweep all the time, so their passes overlap
            "scheduler_sweep_interval": timedelta(milliseconds=10),
            "scheduler_rate_normal": 100_000,
            "scheduler_rate_light": 100_000,
        }
        | extra
    )


@contextlib.asynccontextmanager
async def deployment(
    settings: CommonSettings, own: SchedulerSettings, token: str
) -> AsyncGenerator[tuple[httpx.AsyncClient, httpx.AsyncClient, httpx.AsyncClient]]:
    """One queue and two scheduler replicas on the test's Postgres and NATS."""
    async with (
        running(queue_app(settings), "http://queue") as queue,
        running(create_app(own), "http://scheduler-a") as a,
        running(create_app(own), "http://scheduler-b") as b,
    ):
        for client in (queue, a, b):
            client.headers["Authorization"] = f"Bearer {token}"
        yield queue, a, b


async def say(js: JetStreamContext, agent: str, body: dict[str, Any]) -> None:
    await js.publish(
        f"agentcom.agent.{agent}.report", json.dumps(body | {"agent_id": agent}).encode()
    )


@contextlib.asynccontextmanager
async def beating(js: JetStreamContext, agent: str) -> AsyncGenerator[None]:
    """Heartbeats every 50 ms while inside (the rhythm of a live sidecar, not a wait)."""

    async def beat() -> None:
        while True:
            await say(js, agent, {"kind": "heartbeat"})
            await asyncio.sleep(0.05)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def inbox(nc: Client, agent: str) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []

    async def on_msg(msg: Msg) -> None:
        got.append(json.loads(msg.data))

    await nc.subscribe(f"agentcom.agent.{agent}.inbox", cb=on_msg)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
    return got


async def online(js: JetStreamContext, a: httpx.AsyncClient, agent: str) -> None:
    """Register `agent` and bring it online with its hello (heartbeats only after that: two
    replicas share the report consumer, so a later heartbeat may be applied first)."""
    await a.post("/api/agents", json={"name": agent})
    await say(js, agent, {"kind": "hello"})

    async def idle() -> None:
        assert (await a.get(f"/api/agents/{agent}")).json()["state"] == "idle"

    await eventually(idle)


async def working(
    js: JetStreamContext,
    queue: httpx.AsyncClient,
    a: httpx.AsyncClient,
    agent: str,
    got: list[dict[str, Any]],
) -> tuple[str, int]:
    """Give the online `agent` one task (no retries) and accept it."""
    task = (await queue.post("/api/tasks", json={"description": "x", "max_retries": 0})).json()

    async def assigned() -> dict[str, Any]:
        assigns = [m for m in got if m["kind"] == "assign"]
        assert len(assigns) == 1
        return assigns[0]

    generation = (await eventually(assigned))["generation"]
    await say(js, agent, {"kind": "accepted", "task_id": task["id"], "generation": generation})

    async def started() -> None:
        # from the history, not the state: with a 1 s deadline on a loaded host the agent may be
        # idle again before a poll sees it working (a CI run failed so)
        history = (await a.get(f"/api/agents/{agent}/history")).json()
        assert any(h["to_state"] == "working" for h in history), history

    await eventually(started)
    return task["id"], generation


async def test_a_silent_agent_is_judged_once_by_two_replicas(
    settings: CommonSettings, admin_token: str, nc: Client, js: JetStreamContext
) -> None:
    async with deployment(settings, fast(settings), admin_token) as (queue, a, b):
        before = (await a.get("/metrics")).text
        got = await inbox(nc, "quiet")
        await online(js, a, "quiet")
        async with beating(js, "quiet"):
            task_id, _ = await working(js, queue, a, "quiet", got)
        # silent from here: both replicas wake at its silence deadline and sweep

        async def offline() -> None:
            assert (await b.get("/api/agents/quiet")).json()["state"] == "offline"
            assert (await queue.get(f"/api/tasks/{task_id}")).json()["state"] == "dead_letter"

        await eventually(offline)
        history = (await a.get("/api/agents/quiet/history")).json()
        assert [h["reason"] for h in history if h["to_state"] == "offline"][1:] == [
            "missed heartbeats"
        ]
        after = (await b.get("/metrics")).text  # one process: both replicas' counters
        handed = "agentcom_tasks_handed_back_total"
        assert metric(after, handed, reason="failed") - metric(before, handed, reason="failed") == 1
        silent = "agentcom_agents_silent_total"
        assert metric(after, silent) - metric(before, silent) == 1


async def test_a_deadline_fires_once_with_two_replicas(
    settings: CommonSettings, admin_token: str, nc: Client, js: JetStreamContext
) -> None:
    own = fast(
        settings,
        scheduler_execution_timeout=timedelta(seconds=1),
        scheduler_deadline_grace=timedelta(0),
    )
    async with deployment(settings, own, admin_token) as (queue, a, _):
        got = await inbox(nc, "late")
        await online(js, a, "late")
        async with beating(js, "late"):  # alive throughout: only the deadline takes it back
            task_id, generation = await working(js, queue, a, "late", got)

            async def taken_back() -> None:
                assert (await a.get("/api/agents/late")).json()["state"] == "idle"
                assert (await queue.get(f"/api/tasks/{task_id}")).json()["state"] == "dead_letter"

            await eventually(taken_back)
            # a cancel still in flight from a second judgement would arrive by the next pass
            await say(js, "late", {"kind": "heartbeat"})
            await eventually(lambda: _drained(js))
        cancels = [m for m in got if m["kind"] == "cancel"]
        assert [(c["task_id"], c["generation"], c["reason"]) for c in cancels] == [
            (task_id, generation, "deadline")
        ]
        history = (await a.get("/api/agents/late/history")).json()
        assert [h["reason"] for h in history if "deadline" in h["reason"]] == [
            f"{task_id} past its deadline"
        ]
        events = (await queue.get(f"/api/tasks/{task_id}/history")).json()
        failed = [e for e in events if e["to_state"] == "failed"]
        assert len(failed) == 1, events


async def test_a_stranded_assignment_is_requeued_once_with_two_replicas(
    settings: CommonSettings, admin_token: str, nc: Client
) -> None:
    """The stranded-task sweep runs on every replica too: the queue's requeue is fenced by the
    task's generation and state, so the replica that comes second changes nothing."""
    own = fast(settings, scheduler_accept_timeout=timedelta(milliseconds=300))
    async with deployment(settings, own, admin_token) as (queue, a, _):
        await a.post("/api/agents", json={"name": "ghost"})  # never says hello: offline
        task = (await queue.post("/api/tasks", json={"description": "x"})).json()
        # the queue hands it out, but no scheduler moved the agent (killed between the two)
        claimed = await micro.call(nc, "queue", "claim", ClaimTask(agent_id="ghost"), Claimed)
        assert claimed.task is not None
        assert claimed.task.id == task["id"]

        async def requeued() -> None:
            assert (await queue.get(f"/api/tasks/{task['id']}")).json()["state"] == "queued"

        await eventually(requeued)
        events = (await queue.get(f"/api/tasks/{task['id']}/history")).json()
        back = [e for e in events if e["from_state"] == "assigned"]
        assert [(e["to_state"], "on agent ghost" in e["reason"]) for e in back] == [
            ("queued", True)
        ]


async def _drained(js: JetStreamContext) -> None:
    info = await js.consumer_info("REPORTS", "scheduler-presence")
    assert (info.num_pending, info.num_ack_pending) == (0, 0)
