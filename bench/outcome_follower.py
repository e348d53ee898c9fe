"""Bench-only stand-in for a scheduler mode that does not exist (issue 16): agents send their
outcomes straight to the queue, and the agent is freed by following the queue's `task.*` events
instead of its report.

    AGENTCOM_NATS_URL=... AGENTCOM_DATABASE_URL=... python bench/outcome_follower.py

Run by `bench/outcome_bench.py` as its own process next to the real queue and scheduler. It
reads the EVENTS stream through a durable pull consumer filtered to the events an agent's own
report causes (`task.accepted`, `task.completed`, `task.partial_pass`, `task.failed`) and moves
the agent the way the scheduler's report consumer does after the queue took an outcome
(`presence.stream._outcome_move`): `accepted` assigned -> working, an outcome -> idle. The move
is the scheduler's own batch writer (`batch.transition_many`: the guarded UPDATE, the history
rows and the outbox events in one transaction), on the scheduler's schema; the scheduler
process's relay publishes those events (the writer NOTIFYs its channel).

What it adds, and why: the agent named by the event (`actor`, the report's agent) is moved only
while its row still holds that task at that generation. Without that check a redelivered event
(this process restarted before its ack) would free an agent that has since been given another
task. What it does not do: tell the agent's own `failed` from a sweep's hand-back (both arrive
as `failed` with the agent as actor; a silenced agent's row no longer holds the task, so it is
left alone), rate-limit or validate outcomes (the queue's contract checks them), answer an
`accepted` with `start` (the queue's RPC reply is the go-ahead in this design), or wake the
scheduler's matcher: it finds the freed agents on its next pass (woken by every
`task.submitted` under load, else by its 1 s sweep). Nothing else of the scheduler runs here.
"""

import asyncio
import contextlib
import logging
import os
import signal
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

import nats
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from pydantic import ValidationError
from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from agentcom_common import consumer, db, subjects
from agentcom_common.contracts.agent import AgentState
from agentcom_common.contracts.task import TaskState, TaskTransition
from agentcom_common.outbox import Relay
from agentcom_scheduler import batch, ops
from agentcom_scheduler.tables import outbox_table

DURABLE: Final = "bench-outcome-follower"
FOLLOWED: Final = (
    subjects.TASK_ACCEPTED,
    subjects.TASK_COMPLETED,
    subjects.TASK_PARTIAL_PASS,
    subjects.TASK_FAILED,
)
AT_ONCE: Final = 256  # as the scheduler's REPORTS consumer fetches
_HOLDING: Final = frozenset({AgentState.ASSIGNED, AgentState.WORKING})
_ENDED: Final = frozenset({TaskState.COMPLETED, TaskState.PARTIAL_PASS, TaskState.FAILED})

# the fence: the agents' rows, locked in id order as `batch.transition_many` locks them (two
# transactions taking overlapping agents in different orders would deadlock)
_HELD: Final[TextClause] = text(
    "SELECT id, state, task_id, generation FROM scheduler.agents "
    "WHERE id = ANY(CAST(:ids AS text[])) ORDER BY id FOR UPDATE"
)

log = logging.getLogger("outcome_follower")


@dataclass(slots=True)
class _Row:
    state: AgentState
    task_id: str | None
    generation: int | None


def _move(event: TaskTransition, row: _Row) -> batch.Move | None:
    """The agent's move for this event if its row still holds the event's assignment."""
    if row.state not in _HOLDING or (row.task_id, row.generation) != (
        event.task_id,
        event.generation,
    ):
        return None
    if event.to_state is TaskState.WORKING:
        if row.state is not AgentState.ASSIGNED:
            return None
        return batch.Move(
            event.actor,
            AgentState.ASSIGNED,
            AgentState.WORKING,
            f"accepted {event.task_id}",
            subjects.AGENT_WORKING,
        )
    if event.to_state in _ENDED:
        # the reason the scheduler writes (`_outcome_move`): "<kind> <task>"
        return batch.Move(
            event.actor,
            row.state,
            AgentState.IDLE,
            f"{event.to_state.value} {event.task_id}",
            subjects.AGENT_IDLE,
        )
    return None


def _rounds(events: list[TaskTransition], rows: dict[str, _Row]) -> list[list[batch.Move]]:
    """The moves in rounds, an agent at most once per round and its moves in event order
    (`transition_many` takes an agent once); each planned move updates the row it was fenced
    against, so an `accepted` and the `completed` after it in one batch both apply."""
    rounds: list[list[batch.Move]] = []
    depth: dict[str, int] = {}
    for event in events:
        row = rows.get(event.actor)
        move = _move(event, row) if row is not None else None
        if move is None or row is None:
            continue
        k = depth.get(move.agent_id, 0)
        depth[move.agent_id] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(move)
        row.state = move.target
        if move.target is AgentState.IDLE:
            row.task_id, row.generation = None, None
    return rounds


async def apply(s: ops.Scheduler, events: list[TaskTransition]) -> int:
    """Move the agents these events free (or set working), in one transaction; how many moved."""
    if not events:
        return 0
    moved = 0
    async with s.engine.begin() as conn:
        rows = await _held(conn, sorted({e.actor for e in events}))
        for moves in _rounds(events, rows):
            moved += len(await batch.transition_many(s, conn, moves))
    return moved


async def _held(conn: AsyncConnection, ids: list[str]) -> dict[str, _Row]:
    result = await conn.execute(_HELD, {"ids": ids})
    return {r.id: _Row(AgentState(r.state), r.task_id, r.generation) for r in result.all()}


async def _handle(s: ops.Scheduler, msgs: list[Msg]) -> None:
    """Parse, apply, then ack (after the commit: a crash before it redelivers, and the fence
    makes the repeat harmless); a malformed event is refused once, a failed batch retried."""
    events: list[TaskTransition] = []
    good: list[Msg] = []
    for msg in msgs:
        try:
            events.append(TaskTransition.model_validate_json(msg.data))
        except ValidationError:
            log.warning("follower.malformed", extra={"subject": msg.subject})
            await msg.term()
            continue
        good.append(msg)
    try:
        await apply(s, events)
    except Exception:  # Postgres away: the events come again
        log.exception("follower.failed")
        for msg in good:
            await msg.nak(delay=1)
        return
    for msg in good:
        await msg.ack()


async def follow(s: ops.Scheduler, js: JetStreamContext, stop: asyncio.Event) -> None:
    sub = await consumer.subscribe(
        js, subjects.EVENTS_STREAM, FOLLOWED, DURABLE, consumer.Policy(), new_only=True
    )
    try:
        while not stop.is_set():
            try:
                msgs = await sub.fetch(AT_ONCE, timeout=1)
            except TimeoutError:
                continue
            except Exception:  # reconnecting or the stream is away: unacked events stay stored
                log.exception("follower.fetch_failed")
                await asyncio.sleep(1)
                continue
            await _handle(s, msgs)
    finally:  # a pending fetch would hold the connection's close
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


async def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    nc = await nats.connect(os.environ["AGENTCOM_NATS_URL"])  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
    js = nc.jetstream()  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
    engine = create_async_engine(db.async_url(os.environ["AGENTCOM_DATABASE_URL"]), pool_size=2)
    # `transition_many` needs the scheduler's outbox table; the relay is never run here (the
    # scheduler process's relay is woken by the NOTIFY the writer sends)
    relay = Relay(engine, js, outbox_table, interval=timedelta(seconds=1), batch=1)
    s = ops.Scheduler(engine, outbox_table, relay)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await follow(s, js, stop)  # ends within a fetch's timeout of SIGTERM
    finally:
        await nc.close()
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
