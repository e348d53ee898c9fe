"""The hub follows the tasks of its goals through `agentcom.evt.task.*`.

A durable consumer (`hubfsm-goal-tasks`) reads every task event; an event of a task the hub
submitted for a goal updates that task's state in `goal_tasks` and wakes the driver. The ack
comes after the commit, so a hub killed mid-event reads it again (the update is idempotent).
An event older than the one the state came from is skipped (`seen_at`): redelivery may reorder
them. A task's end is also handed to `ended` (the hub reads its delivery: `deliveries`). The driver's sweep also asks the queue for a goal's tasks, so a missed event delays a
goal by one sweep at most, never strands it.
"""

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from sqlalchemy import or_, update
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import consumer, subjects
from agentcom_common.contracts.task import TaskState, TaskTransition
from agentcom_common.settings import CommonSettings
from agentcom_hubfsm.tables import goal_tasks

CONSUMER = "hubfsm-goal-tasks"
TASK_EVENTS = subjects.TASK_EVENTS
ENDED = frozenset({TaskState.COMPLETED, TaskState.PARTIAL_PASS, TaskState.FAILED})
Ended = Callable[[str, str], Awaitable[None]]  # (goal id, task id) of a goal task that ended


async def _nothing(_goal_id: str, _task_id: str) -> None:
    return None


async def follow(
    engine: AsyncEngine,
    js: JetStreamContext,
    settings: CommonSettings,
    wake: asyncio.Event,
    ended: Ended = _nothing,
) -> None:
    await consumer.consume(
        js,
        subjects.EVENTS_STREAM,
        TASK_EVENTS,
        CONSUMER,
        consumer.Policy.of(settings),
        partial(_on_event, engine, wake=wake, ended=ended),
    )


# a running task's reports, relayed under the same prefix with the agent's own body: they move
# no state, and read as a `TaskTransition` each was refused as unprocessable (one refusal
# event per progress line and tool call of every goal task)
_REPORTS = frozenset({subjects.TASK_PROGRESS, subjects.TASK_TOOL_CALL})


async def _on_event(
    engine: AsyncEngine, msg: Msg, *, wake: asyncio.Event, ended: Ended = _nothing
) -> None:
    if msg.subject in _REPORTS:
        return
    event = TaskTransition.model_validate_json(msg.data)
    async with engine.begin() as conn:
        moved = await conn.execute(
            update(goal_tasks)
            .where(goal_tasks.c.task_id == event.task_id)
            .where(or_(goal_tasks.c.seen_at.is_(None), goal_tasks.c.seen_at <= event.at))
            .values(state=event.to_state.value, seen_at=event.at)
        )
    if moved.rowcount:
        wake.set()
        if event.to_state in ENDED and event.goal_id is not None:
            await ended(event.goal_id, event.task_id)
