"""Matching and reports in batches: one matching pass serves many agents alike, the best task
to the longest idle, never one task to two agents; many agents' outcomes handled in one go.

The scheduler's loops are not running here (its app is built without them): the test
drives `matching.match_once` and the report batch itself, against a real queue service.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import micro, subjects
from agentcom_common.contracts.agent import RegisterAgent
from agentcom_common.contracts.task import SubmitTask, SubmitTasks, SubmittedTasks, TaskRef
from agentcom_common.outbox import Relay
from agentcom_common.service import create_app as build
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import eventually, running
from agentcom_queue.app import create_app as queue_app
from agentcom_scheduler import matching, ops, presence, tables
from quiet_scheduler import SPEC as QUIET_SPEC

Json = dict[str, Any]
LATER = timedelta(minutes=30)


@pytest.fixture
async def queue(settings: CommonSettings, admin_token: str) -> AsyncIterator[httpx.AsyncClient]:
    scheduler = build(QUIET_SPEC, settings)
    async with (
        running(queue_app(settings), "http://queue") as client,
        running(scheduler, "http://scheduler"),
    ):
        client.headers["Authorization"] = f"Bearer {admin_token}"
        yield client


@pytest.fixture
def sched(engine: AsyncEngine, js: JetStreamContext) -> ops.Scheduler:
    # the ops without an app: a relay to wake that no loop runs (the app's relay sweeps the rows)
    relay = Relay(engine, js, tables.outbox_table, interval=timedelta(seconds=1), batch=100)
    return ops.Scheduler(engine, tables.outbox_table, relay)


async def idle_agents(
    s: ops.Scheduler, nc: Client, js: JetStreamContext, names: list[str], **profile: Any
) -> None:
    """Register the agents and bring them online in this order (the first is the longest idle)."""
    for name in names:
        await ops.register(s, RegisterAgent(name=name, **profile))
        hello = json.dumps({"kind": "hello", "agent_id": name}).encode()
        await presence.on_report(s, nc, js, f"agentcom.agent.{name}.report", hello)


async def submit(nc: Client, count: int, **fields: Any) -> list[TaskRef]:
    body = SubmitTasks(tasks=[SubmitTask(description=f"task {i}", **fields) for i in range(count)])
    return list((await micro.call(nc, "queue", "submit_batch", body, SubmittedTasks)).tasks)


async def agent(s: ops.Scheduler, name: str) -> Json:
    return (await ops.get(s, name)).model_dump(mode="json")


async def test_one_pass_assigns_many_agents_best_task_to_the_longest_idle(
    queue: httpx.AsyncClient, sched: ops.Scheduler, nc: Client, js: JetStreamContext
) -> None:
    names = [f"w{i:02d}" for i in range(12)]
    await idle_agents(sched, nc, js, names)
    made = await submit(nc, 10)
    inbox = await js.pull_subscribe("agentcom.agent.*.inbox", durable="watch", stream="INBOX")

    assigned = await matching.match_once(sched, nc, js, LATER)

    assert assigned == 10
    holders = {t.id: (await queue.get(f"/api/tasks/{t.id}")).json()["assigned_to"] for t in made}
    assert list(holders.values()) == names[:10]  # oldest task to the longest idle agent
    sent = [(m.subject.split(".")[2], json.loads(m.data)) for m in await inbox.fetch(20, 5)]
    assert sorted((who, a["task"]["id"]) for who, a in sent) == sorted(
        (who, task) for task, who in holders.items()
    )
    rows = {n: await agent(sched, n) for n in names}
    assert [rows[n]["state"] for n in names] == ["assigned"] * 10 + ["idle"] * 2
    for task_id, name in holders.items():
        last = (await ops.history(sched, name))[-1]
        assert (last.to_state, last.reason) == ("assigned", f"task {task_id} generation 1")
        assert (rows[name]["state"], name) == ("assigned", name)
    assert await matching.match_once(sched, nc, js, LATER) == 0


async def test_passes_side_by_side_never_give_one_task_to_two_agents(
    queue: httpx.AsyncClient, sched: ops.Scheduler, nc: Client, js: JetStreamContext
) -> None:
    names = [f"p{i:03d}" for i in range(150)]
    await idle_agents(sched, nc, js, names)
    made = await submit(nc, 100)

    # passes racing for the same idle agents (as replicas would): the queue hands a task to an
    # agent another pass just took, the move fails, the task goes straight back
    counts = await asyncio.gather(*(matching.match_once(sched, nc, js, LATER) for _ in range(4)))
    total = sum(counts)
    while more := await matching.match_once(sched, nc, js, LATER):
        total += more

    assert total == 100
    holders = [(await queue.get(f"/api/tasks/{t.id}")).json()["assigned_to"] for t in made]
    assert None not in holders
    assert len(set(holders)) == 100  # no agent holds two tasks, no task went twice
    busy = [n for n in names if (await agent(sched, n))["state"] == "assigned"]
    assert sorted(busy) == sorted(holders)


async def test_capabilities_still_decide_in_a_batch(
    queue: httpx.AsyncClient, sched: ops.Scheduler, nc: Client, js: JetStreamContext
) -> None:
    await idle_agents(sched, nc, js, ["plain-1", "plain-2"])
    await idle_agents(sched, nc, js, ["gpu-1"], capabilities=["gpu"])
    gpu = await submit(nc, 2, needed_capabilities=["gpu"])

    assert await matching.match_once(sched, nc, js, LATER) == 1

    task = (await queue.get(f"/api/tasks/{gpu[0].id}")).json()
    assert task["assigned_to"] == "gpu-1"
    assert (await queue.get(f"/api/tasks/{gpu[1].id}")).json()["state"] == "queued"
    assert (await agent(sched, "plain-1"))["state"] == "idle"


async def test_many_agents_outcomes_in_one_batch_each_applied_in_order(
    queue: httpx.AsyncClient, sched: ops.Scheduler, nc: Client, js: JetStreamContext
) -> None:
    names = [f"o{i:02d}" for i in range(20)]
    await idle_agents(sched, nc, js, names)
    made = await submit(nc, 20)
    assert await matching.match_once(sched, nc, js, LATER) == 20
    holders = {t.id: (await queue.get(f"/api/tasks/{t.id}")).json()["assigned_to"] for t in made}
    # the scheduler's consumer exists, all are stored before it reads: they come as one batch
    first = await js.pull_subscribe(subjects.REPORTS_ALL, durable=presence.CONSUMER)
    await first.unsubscribe()
    for task_id, name in holders.items():
        ids = {"agent_id": name, "task_id": task_id, "generation": 1}
        for kind in ("accepted", "completed"):
            body = json.dumps(ids | {"kind": kind}).encode()
            await js.publish(f"agentcom.agent.{name}.report", body)
    stale = {"agent_id": "o00", "task_id": made[1].id, "generation": 9, "kind": "failed"}
    await js.publish("agentcom.agent.o00.report", json.dumps(stale).encode())
    consumer = asyncio.create_task(presence.consume_reports(sched, nc, js))
    try:

        async def handled() -> None:
            info = await js.consumer_info("REPORTS", presence.CONSUMER)
            assert (info.num_pending, info.num_ack_pending) == (0, 0)

        await eventually(handled)
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer

    tasks = [(await queue.get(f"/api/tasks/{t.id}")).json() for t in made]
    assert [(t["state"], t["retry_count"]) for t in tasks] == [("completed", 0)] * 20
    for name in names:
        trail = [(h.to_state, h.reason.split()[0]) for h in await ops.history(sched, name)]
        assert trail[-3:] == [("assigned", "task"), ("working", "accepted"), ("idle", "completed")]
        assert (await agent(sched, name))["state"] == "idle"


async def test_a_task_preferring_an_agent_goes_to_it_and_otherwise_to_anyone_at_once(
    queue: httpx.AsyncClient, sched: ops.Scheduler, nc: Client, js: JetStreamContext
) -> None:
    # a pull request's follow-up names the agent that did the work (`metadata.prefer_agent`)
    await idle_agents(sched, nc, js, ["first", "second"])  # "first" is the longest idle
    older = await submit(nc, 1)
    follow_up = await submit(nc, 1, metadata={"prefer_agent": "first"})

    assert await matching.match_once(sched, nc, js, LATER) == 2

    async def holder(ref: TaskRef) -> str | None:
        return (await queue.get(f"/api/tasks/{ref.id}")).json()["assigned_to"]

    # lane then age would give the older task to the longest idle ("first"): the preference
    # wins, and the older task goes to the next agent
    assert await holder(follow_up[0]) == "first"
    assert await holder(older[0]) == "second"

    # the preferred agent is busy: any capable agent takes the task at once, no hold
    await idle_agents(sched, nc, js, ["third"])
    elsewhere = await submit(nc, 1, metadata={"prefer_agent": "first"})
    assert await matching.match_once(sched, nc, js, LATER) == 1
    assert await holder(elsewhere[0]) == "third"
