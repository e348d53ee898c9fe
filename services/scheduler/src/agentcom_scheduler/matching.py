"""Matching: idle agents claim tasks from the queue; assignments go to the agent's inbox.

Events wake it (a task became claimable, an agent became idle); a sweep every interval makes
sure nothing waits on a lost event. If the process dies after a claim but before the inbox
publish, the queue holds an assignment nobody was told about; the accept timeout (issue #5,
next step) hands it back.
"""

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from opentelemetry.trace import SpanKind
from sqlalchemy.ext.asyncio import AsyncConnection

from agentcom_common import cancelling, clock, messaging, micro, subjects, task_traces
from agentcom_common.contracts.agent import Assign
from agentcom_common.contracts.task import ClaimedTasks, ClaimForAgents, RequeueTask, TaskView
from agentcom_common.errors import AgentcomError
from agentcom_scheduler import fastpath, ops

log = logging.getLogger(__name__)

WAKE_SUBJECTS = (
    subjects.TASK_SUBMITTED,
    subjects.TASK_RELEASED,
    subjects.TASK_REQUEUED,
    subjects.TASK_RETRIED,
)
"""Task events wake matching; an agent that becomes idle or comes online wakes it in-process
(`wakeups`), right after the change, not after its event's round trip through the relay."""


def _deadline(task: TaskView, execution_timeout: timedelta) -> datetime:
    """The task's own `complete_by` if it has one, else the execution timeout from now."""
    return task.complete_by or clock.now() + execution_timeout


CLAIMS_AT_ONCE = 64
"""Idle agents of one profile offered work in one queue round trip and one statement."""


Idle = list[tuple[fastpath.Profile, list[str]]]


@dataclass(slots=True)
class IdleCache:
    """The matcher's last read of idle agents, reused by the passes right after it.

    A pass offers work to the cached agents not given a task since (the longest idle of them
    first, as read); the guarded UPDATE still decides, and an agent offered a task is dropped
    whether it took it or not. Read again when older than `max_age`, when an agent came
    online (maybe a profile not in it: `wakeups`), and when every agent offered got a task
    (more may be idle by now). Agents that became idle since the read are the youngest: they
    would come last anyway.
    """

    max_age: float = 0.1
    read_at: float = float("-inf")
    profiles: Idle = field(default_factory=lambda: list[tuple[fastpath.Profile, list[str]]]())

    def fresh(self) -> Idle | None:
        if time.monotonic() - self.read_at > self.max_age:
            return None
        left = [(p, list(agents)) for p, agents in self.profiles if agents]
        return left or None

    def keep(self, idle: Idle) -> None:
        self.profiles = [(p, list(agents)) for p, agents in idle]
        self.read_at = time.monotonic()

    def drop(self, agents: set[str]) -> None:
        self.profiles = [(p, [a for a in ids if a not in agents]) for p, ids in self.profiles]

    def stale(self) -> None:
        self.read_at = float("-inf")


async def match_once(
    s: ops.Scheduler,
    nc: Client,
    js: JetStreamContext,
    execution_timeout: timedelta,
    raw: Any = None,
    sending: set[asyncio.Task[None]] | None = None,
    cache: IdleCache | None = None,
) -> int:
    """Offer work to idle agents; returns how many tasks were assigned.

    Agents alike (same capabilities and repos) get the same answer from the queue, so work is
    offered profile by profile: up to CLAIMS_AT_ONCE of its idle agents, longest idle first, in
    one `claim_agents` call (the best task to the longest idle), one statement for all their
    moves, then the assignments published side by side; again while a profile's whole chunk
    found work. The cost follows the number of profiles and assignments, not of idle agents.
    `raw` is an asyncpg connection to use (the matcher holds one); without it one is checked
    out for the pass. The inbox publishes (and their acks) run as tasks put in `sending`, so
    the matcher's next pass need not wait for them; without it they are awaited here.
    `cache` (the matcher's) spares the read of idle agents in passes close together.
    """
    if raw is None:
        async with s.engine.connect() as conn:
            raw = await _driver(conn)
            return await match_once(s, nc, js, execution_timeout, raw, sending, cache)
    mine: set[asyncio.Task[None]] = set() if sending is None else sending
    assigned = 0
    while True:
        full = False
        idle = cache.fresh() if cache is not None else None
        cached = idle is not None
        if idle is None:
            idle = await _read(raw)
            if cache is not None:
                cache.keep(idle)
        for profile, chunk in idle:
            claimed, sent = await _offer(s, nc, js, raw, profile, chunk, execution_timeout, mine)
            if cache is not None:
                cache.drop(claimed)
            assigned += sent
            # every agent offered got a task: the queue may hold more, and more agents may wait
            full = full or (len(claimed) == len(chunk) and (cached or len(chunk) == CLAIMS_AT_ONCE))
        if not full:
            break
        if cache is not None:
            cache.stale()
    if sending is None:
        await asyncio.gather(*mine)
    return assigned


async def _read(raw: Any) -> Idle:
    reading = time.perf_counter()
    idle = await fastpath.idle(raw, CLAIMS_AT_ONCE)
    if log.isEnabledFor(logging.DEBUG):
        took = round((time.perf_counter() - reading) * 1000, 2)
        log.debug("matching.read", extra={"read_ms": took, "profiles": len(idle)})
    return idle


async def _driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under an engine connection."""
    return (await conn.get_raw_connection()).driver_connection


async def _offer(
    s: ops.Scheduler,
    nc: Client,
    js: JetStreamContext,
    raw: Any,
    profile: fastpath.Profile,
    chunk: list[str],
    execution_timeout: timedelta,
    sending: set[asyncio.Task[None]],
) -> tuple[set[str], int]:
    """Claim one task each for idle agents alike and send the assignments; returns (the agents
    the queue gave a task, assignments sent). A task whose agent left meanwhile goes straight
    back."""
    capabilities, repos, refused = profile
    claim = ClaimForAgents(
        agent_ids=chunk, capabilities=capabilities, repos=repos, exclude_tasks=refused
    )
    started = time.perf_counter()
    tasks = (await micro.call(nc, "queue", "claim_agents", claim, ClaimedTasks)).tasks
    claimed_at = time.perf_counter()
    if not tasks:
        return set(), 0
    moves = [
        fastpath.Assignment(
            task.assigned_to or "", task.id, task.generation, _deadline(task, execution_timeout)
        )
        for task in tasks
    ]
    moved = await fastpath.assign(raw, s.outbox.schema or "", moves)
    s.relay.wake()
    moved_at = time.perf_counter()
    sent = [(task, move.deadline) for task, move in zip(tasks, moves, strict=True)]
    sent = [(task, deadline) for task, deadline in sent if task.assigned_to in moved]
    publishing = asyncio.create_task(_send_all(js, sent))
    sending.add(publishing)
    publishing.add_done_callback(sending.discard)
    if log.isEnabledFor(logging.DEBUG):  # where a pass spends its time (bench --trace)
        log.debug(
            "matching.offer",
            extra={
                "tasks": len(tasks),
                "claim_ms": round((claimed_at - started) * 1000, 2),
                "assign_ms": round((moved_at - claimed_at) * 1000, 2),
            },
        )
    for task in tasks:
        if task.assigned_to not in moved:  # it went offline meanwhile: give it straight back
            back = RequeueTask(task_id=task.id, generation=task.generation, reason="agent left")
            await micro.call(nc, "queue", "requeue", back, TaskView)
    return {task.assigned_to or "" for task in tasks}, len(sent)


async def _send_all(js: JetStreamContext, tasks: list[tuple[TaskView, datetime]]) -> None:
    """Publish the assignments side by side, each with the deadline the agent row holds. One
    that fails is not retried: the queue holds the assignment, and the accept timeout hands it
    back."""
    results = await asyncio.gather(
        *(_send(js, task, deadline) for task, deadline in tasks), return_exceptions=True
    )
    for (task, _), result in zip(tasks, results, strict=True):
        if isinstance(result, Exception):
            log.warning(
                "task.assign_unsent",
                extra={"task_id": task.id, "error": type(result).__name__},
            )


async def _send(js: JetStreamContext, task: TaskView, deadline: datetime) -> None:
    agent_id = task.assigned_to or ""
    # in the task's trace: the inbox message's `traceparent` names this span
    with task_traces.span(
        task.id,
        "scheduler assign",
        __name__,
        kind=SpanKind.PRODUCER,
        attributes={"agentcom.agent.id": agent_id},
    ):
        await messaging.publish(
            js,
            subjects.agent_inbox(agent_id),
            Assign(task=task, generation=task.generation, deadline=deadline),
            msg_id=f"assign.{task.id}.{task.generation}",
        )
    log.info("task.assigned", extra={"agent_id": agent_id, "task_id": task.id})


async def match_forever(
    s: ops.Scheduler, nc: Client, js: JetStreamContext, every: timedelta, execution: timedelta
) -> None:
    """Match on every wake-up (an event, or a change in this process) and every `every`.

    One asyncpg connection is held across passes (no checkout, ping or reset per pass); after
    a failure it is given back and a fresh one checked out for the next pass.
    """
    wake = asyncio.Event()

    async def on_event(_msg: Msg) -> None:
        wake.set()

    debug = log.isEnabledFor(logging.DEBUG)

    for subject in WAKE_SUBJECTS:
        await nc.subscribe(subject, cb=on_event)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
    cache = IdleCache()
    s.wakeups.register(wake, cache.stale)
    sending: set[asyncio.Task[None]] = set()
    try:
        while True:
            try:
                async with s.engine.connect() as conn:
                    raw = await _driver(conn)
                    while True:
                        wake.clear()
                        started = time.perf_counter()
                        await _pass(s, nc, js, execution, raw, sending, cache)
                        if debug:
                            log.debug(
                                "matching.pass",
                                extra={"ms": round((time.perf_counter() - started) * 1000, 2)},
                            )
                        await _wait(wake, every)
            except Exception:  # Postgres hiccup: the next pass checks out a fresh connection
                log.exception("matching.failed")
                await _wait(wake, every)
    finally:
        s.wakeups.unregister(wake)
        for publishing in sending:
            publishing.cancel()


async def _pass(
    s: ops.Scheduler,
    nc: Client,
    js: JetStreamContext,
    execution: timedelta,
    raw: Any,
    sending: set[asyncio.Task[None]],
    cache: IdleCache,
) -> None:
    try:
        await match_once(s, nc, js, execution, raw, sending, cache)
    except AgentcomError as exc:  # the queue is away: the next pass retries
        log.warning("matching.paused", extra={"error": exc.code})
    except (OSError, TimeoutError, NatsError) as exc:  # NATS: an unsent assignment times out
        log.warning("matching.nats_failed", extra={"error": type(exc).__name__})


async def _wait(wake: asyncio.Event, every: timedelta) -> None:
    await cancelling.woken(wake, every.total_seconds())
