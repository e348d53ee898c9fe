"""Matching: idle agents claim tasks from the queue; assignments go to the agent's inbox.

Events wake it (a task became claimable, an agent became idle); a sweep every interval makes
sure nothing waits on a lost event. If the process dies after a claim but before the inbox
publish, the queue holds an assignment nobody was told about; the accept timeout (issue #5,
next step) hands it back.
"""

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncConnection

from agentcom_common import clock, messaging, outbox, subjects
from agentcom_common.contracts.agent import Assign
from agentcom_common.contracts.task import ClaimForAgents, RequeueTask
from agentcom_common.errors import AgentcomError
from agentcom_scheduler import fastpath, ops, queue_client, store, wakeups

log = logging.getLogger(__name__)

WAKE_SUBJECTS = (
    "agentcom.evt.task.submitted",
    "agentcom.evt.task.released",
    "agentcom.evt.task.requeued",
    "agentcom.evt.task.retried",
)
"""Task events wake matching; an agent that becomes idle or comes online wakes it in-process
(`wakeups`), right after the change, not after its event's round trip through the relay."""


def _deadline(task: dict[str, Any], execution_timeout: timedelta) -> datetime:
    """The task's own `complete_by` if it has one, else the execution timeout from now."""
    if task.get("complete_by"):
        return datetime.fromisoformat(task["complete_by"])
    return clock.now() + execution_timeout


CLAIMS_AT_ONCE = 64
"""Idle agents of one profile offered work in one queue round trip and one statement."""


PASSES_AT_ONCE = 2
"""Matching passes in flight at once: a wake-up during a pass's `claim_agents` round trip
starts the next pass at once (on other idle agents) instead of waiting for it."""


@dataclass(slots=True)
class Link:
    """The matcher's connection and what its passes in flight share."""

    raw: Any
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one statement at a time on raw
    reserved: set[str] = field(default_factory=set[str])  # idle agents a pass is offering to
    sending: set[asyncio.Task[None]] = field(default_factory=set[asyncio.Task[None]])
    broken: bool = False


async def match_once(
    s: ops.Scheduler,
    nc: Client,
    js: JetStreamContext,
    execution_timeout: timedelta,
    link: Link | None = None,
) -> int:
    """Offer work to idle agents; returns how many tasks were assigned.

    Agents alike (same capabilities and repos) get the same answer from the queue, so work is
    offered profile by profile: up to CLAIMS_AT_ONCE of its idle agents, longest idle first, in
    one `claim_agents` call (the best task to the longest idle), one statement for all their
    moves, then the assignments published side by side; again while a profile's whole chunk
    found work. The cost follows the number of profiles and assignments, not of idle agents.

    `link` is the matcher's held connection: the inbox publishes (and their acks) then run as
    its tasks, so the next pass need not wait for them, and agents another pass in flight is
    offering to are left out. Without it a connection is checked out for the pass and the
    publishes are awaited here.
    """
    if link is None:
        async with s.engine.connect() as conn:
            own = Link(await _driver(conn))
            assigned = await match_once(s, nc, js, execution_timeout, own)
            await asyncio.gather(*own.sending)
            return assigned
    assigned = 0
    while True:
        full = False
        reading = time.perf_counter()
        async with link.lock:
            idle = await fastpath.idle(link.raw, CLAIMS_AT_ONCE + len(link.reserved))
        if log.isEnabledFor(logging.DEBUG):
            took = round((time.perf_counter() - reading) * 1000, 2)
            log.debug("matching.read", extra={"read_ms": took, "profiles": len(idle)})
        chunks: list[tuple[store.Profile, list[str]]] = []
        for profile, agents in idle:  # no await from here to the reservation: it is atomic
            free = [a for a in agents if a not in link.reserved][:CLAIMS_AT_ONCE]
            if free:
                link.reserved.update(free)
                chunks.append((profile, free))
        try:
            for profile, chunk in chunks:
                claimed, sent = await _offer(s, nc, js, link, profile, chunk, execution_timeout)
                assigned += sent
                full = full or (claimed == len(chunk) == CLAIMS_AT_ONCE)
        finally:
            for _, chunk in chunks:
                link.reserved.difference_update(chunk)
        if not full:
            return assigned


async def _driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under an engine connection."""
    return (await conn.get_raw_connection()).driver_connection


async def _offer(
    s: ops.Scheduler,
    nc: Client,
    js: JetStreamContext,
    link: Link,
    profile: store.Profile,
    chunk: list[str],
    execution_timeout: timedelta,
) -> tuple[int, int]:
    """Claim one task each for idle agents alike and send the assignments; returns (tasks
    claimed, assignments sent). A task whose agent left meanwhile goes straight back."""
    capabilities, repos = profile
    claim = ClaimForAgents(agent_ids=chunk, capabilities=capabilities, repos=repos)
    started = time.perf_counter()
    tasks: list[dict[str, Any]] = (await queue_client.call(nc, "claim_agents", claim))["tasks"]
    claimed_at = time.perf_counter()
    if not tasks:
        return 0, 0
    moves = [
        fastpath.Assignment(
            task["assigned_to"], task["id"], task["generation"], _deadline(task, execution_timeout)
        )
        for task in tasks
    ]
    async with link.lock:
        moved = await fastpath.assign(link.raw, s.outbox.schema or "", moves)
    outbox.wake_local(s.outbox)
    moved_at = time.perf_counter()
    sent = [task for task in tasks if task["assigned_to"] in moved]
    publishing = asyncio.create_task(_send_all(js, sent))
    link.sending.add(publishing)
    publishing.add_done_callback(link.sending.discard)
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
        if task["assigned_to"] not in moved:  # it went offline meanwhile: give it straight back
            back = RequeueTask(
                task_id=task["id"], generation=task["generation"], reason="agent left"
            )
            await queue_client.call(nc, "requeue", back)
    return len(tasks), len(sent)


async def _send_all(js: JetStreamContext, tasks: list[dict[str, Any]]) -> None:
    """Publish the assignments side by side. One that fails is not retried: the queue holds
    the assignment, and the accept timeout hands it back."""
    results = await asyncio.gather(*(_send(js, task) for task in tasks), return_exceptions=True)
    for task, result in zip(tasks, results, strict=True):
        if isinstance(result, Exception):
            log.warning(
                "task.assign_unsent",
                extra={"task_id": task["id"], "error": type(result).__name__},
            )


async def _send(js: JetStreamContext, task: dict[str, Any]) -> None:
    agent_id = task["assigned_to"]
    await messaging.publish(
        js,
        subjects.agent_inbox(agent_id),
        Assign(task=task, generation=task["generation"]),
        msg_id=f"assign.{task['id']}.{task['generation']}",
    )
    log.info("task.assigned", extra={"agent_id": agent_id, "task_id": task["id"]})


async def match_forever(
    s: ops.Scheduler, nc: Client, js: JetStreamContext, every: timedelta, execution: timedelta
) -> None:
    """Match on every wake-up (an event, or a change in this process) and every `every`.

    One asyncpg connection is held across passes (no checkout, ping or reset per pass); after
    a failure it is given back and a fresh one checked out. A wake-up starts a pass at once
    while fewer than PASSES_AT_ONCE are in flight, else as soon as one ends (one pass covers
    every wake-up before it starts).
    """
    wake = asyncio.Event()

    async def on_event(_msg: Msg) -> None:
        wake.set()

    for subject in WAKE_SUBJECTS:
        await nc.subscribe(subject, cb=on_event)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
    wakeups.register(wake)
    wake.set()  # a first pass at start
    running: set[asyncio.Task[None]] = set()
    link: Link | None = None
    try:
        while True:
            try:
                async with s.engine.connect() as conn:
                    link = Link(await _driver(conn))
                    await _dispatch(s, nc, js, execution, every, wake, link, running)
            except Exception:  # Postgres hiccup: the next pass checks out a fresh connection
                log.exception("matching.failed")
            wake.set()  # try again after the pause
            await asyncio.sleep(every.total_seconds())
    finally:
        wakeups.unregister(wake)
        for task in running:
            task.cancel()
        if link is not None:
            for publishing in link.sending:
                publishing.cancel()


async def _dispatch(
    s: ops.Scheduler,
    nc: Client,
    js: JetStreamContext,
    execution: timedelta,
    every: timedelta,
    wake: asyncio.Event,
    link: Link,
    running: set[asyncio.Task[None]],
) -> None:
    """Start passes on `link` as wake-ups come, until a pass finds the connection broken."""
    while not link.broken:
        await _wait(wake, every)
        wake.clear()
        while len(running) >= PASSES_AT_ONCE:
            await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        if link.broken:
            break
        task = asyncio.create_task(_pass(s, nc, js, execution, link))
        running.add(task)
        task.add_done_callback(running.discard)
    if running:  # the connection goes back only when no pass uses it
        await asyncio.wait(running)


async def _pass(
    s: ops.Scheduler, nc: Client, js: JetStreamContext, execution: timedelta, link: Link
) -> None:
    started = time.perf_counter()
    try:
        await match_once(s, nc, js, execution, link)
    except AgentcomError as exc:  # the queue is away: the next pass retries
        log.warning("matching.paused", extra={"error": exc.code})
    except (OSError, TimeoutError, NatsError) as exc:  # NATS: an unsent assignment times out
        log.warning("matching.nats_failed", extra={"error": type(exc).__name__})
    except Exception:  # Postgres: the matcher checks out a fresh connection
        log.exception("matching.failed")
        link.broken = True
    if log.isEnabledFor(logging.DEBUG):
        took = round((time.perf_counter() - started) * 1000, 2)
        log.debug("matching.pass", extra={"ms": took})


async def _wait(wake: asyncio.Event, every: timedelta) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(every.total_seconds()):
            await wake.wait()
