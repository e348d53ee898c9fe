"""kill -9 of the queue while 1,000 tasks flow: nothing lost, nothing doubled."""

import asyncio
import json
from collections import Counter
from typing import TypeVar

import pytest
from nats.aio.client import Client
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import micro
from agentcom_common.contracts.task import (
    Claimed,
    ClaimTask,
    ReportTask,
    RequeueTask,
    SubmitTask,
    TaskView,
)
from agentcom_common.errors import AgentcomError
from agentcom_common.testing import ServiceProcess

pytestmark = pytest.mark.system

TASKS = 1000
TERMINAL = {"completed", "dead_letter"}
M = TypeVar("M", bound=BaseModel)


async def call(nc: Client, op: str, body: BaseModel, reply: type[M]) -> M | None:
    """Retry through the outage: no responders / timeouts mean the queue is down, not an answer.
    None: the queue refused (a report the crash made stale); the flow goes on."""
    for _ in range(600):
        try:
            return await micro.call(nc, "queue", op, body, reply, timeout=2)
        except AgentcomError as exc:
            if exc.code != "queue_unavailable":
                return None
            await asyncio.sleep(0.05)
    raise AssertionError(f"queue never answered {op}")


async def work(nc: Client, agent: str, failing: set[str]) -> None:
    while True:
        claimed = await call(nc, "claim", ClaimTask(agent_id=agent), Claimed)
        assert claimed is not None, "a claim is never refused"
        if (task := claimed.task) is None:
            return
        accept = ReportTask(
            task_id=task.id, agent_id=agent, generation=task.generation, outcome="accepted"
        )
        await call(nc, "report", accept, TaskView)
        outcome = "failed" if task.description in failing else "completed"
        end = accept.model_copy(update={"outcome": outcome, "error": "planned failure"})
        await call(nc, "report", end, TaskView)


async def test_kill_9_mid_flow_loses_and_doubles_nothing(
    queue_process: ServiceProcess, nc: Client, engine: AsyncEngine
) -> None:
    failing = {f"task {i}" for i in range(0, TASKS, 10)}  # these go through retries to dead letter
    for start in range(0, TASKS, 100):
        await asyncio.gather(
            *(
                call(
                    nc,
                    "submit",
                    SubmitTask(description=f"task {i}", max_retries=1, client_key=f"k{i}"),
                    TaskView,
                )
                for i in range(start, start + 100)
            )
        )

    workers = [asyncio.create_task(work(nc, f"w{i}", failing)) for i in range(4)]
    await _until(engine, "SELECT count(*) FROM queue.tasks WHERE state = 'completed'", 200)
    await asyncio.to_thread(queue_process.kill)
    await asyncio.to_thread(queue_process.start)
    await asyncio.gather(*workers)

    # a claim or report whose reply died with the process leaves an assignment nobody works on;
    # the scheduler's sweep hands those back in production, here we do it by hand
    async with engine.connect() as conn:
        orphans = (
            await conn.execute(
                text(
                    "SELECT id, generation FROM queue.tasks WHERE state IN ('assigned', 'working')"
                )
            )
        ).all()
    for orphan in orphans:
        back = RequeueTask(
            task_id=orphan.id, generation=orphan.generation, reason="orphaned by the crash"
        )
        await call(nc, "requeue", back, TaskView)
    await asyncio.gather(*(work(nc, f"w{i}", failing) for i in range(4)))

    async with engine.connect() as conn:
        final = dict((await conn.execute(text("SELECT id, state FROM queue.tasks"))).all())
        history = (
            await conn.execute(text("SELECT task_id, to_state, generation FROM queue.task_history"))
        ).all()
    assert len(final) == TASKS
    assert set(final.values()) <= TERMINAL
    assert Counter(final.values())["dead_letter"] == len(failing)
    ended = Counter(h.task_id for h in history if h.to_state in TERMINAL)
    assert set(ended.values()) == {1}  # each task ended exactly once

    events = await _task_events(nc, expected=len(history))
    assert events == Counter((h.task_id, h.to_state, h.generation) for h in history)


async def _until(engine: AsyncEngine, count_sql: str, at_least: int) -> None:
    for _ in range(1200):
        async with engine.connect() as conn:
            if (await conn.execute(text(count_sql))).scalar_one() >= at_least:
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never reached {at_least}: {count_sql}")


async def _task_events(nc: Client, expected: int) -> Counter[tuple[str, str, int]]:
    """Every task event in the stream (waiting for the relay to catch up)."""
    js = nc.jetstream()  # pyright: ignore[reportUnknownMemberType]  # nats-py: untyped callback parameter
    stored = 0
    for _ in range(200):
        info = await js.stream_info("EVENTS", subjects_filter="agentcom.evt.task.>")
        stored = sum((info.state.subjects or {}).values())
        if stored >= expected:
            break
        await asyncio.sleep(0.05)
    sub = await js.subscribe("agentcom.evt.task.>", ordered_consumer=True)
    seen: Counter[tuple[str, str, int]] = Counter()
    for _ in range(stored):
        event = json.loads((await sub.next_msg(timeout=10)).data)
        seen[(event["task_id"], event["to_state"], event["generation"])] += 1
    return seen
