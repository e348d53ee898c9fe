"""The presence sweep: silent agents go offline, unaccepted or overdue assignments are taken
back; it runs every interval and at the moment the next agent falls silent."""

import asyncio
import logging
import time
from datetime import datetime, timedelta

from nats.aio.client import Client
from nats.js import JetStreamContext

from agentcom_common import clock, messaging, subjects
from agentcom_common.contracts.agent import (
    AgentState,
    Cancel,
)
from agentcom_scheduler import meters, ops, store
from agentcom_scheduler.presence.core import Gate, hand_back, transition_if
from agentcom_scheduler.presence.stream import report_lag

log = logging.getLogger("agentcom_scheduler.presence")  # one name for all of presence


async def sweep(
    s: ops.Scheduler,
    nc: Client,
    js: JetStreamContext,
    silence: timedelta,
    accept: timedelta,
    interval: timedelta | None = None,
    heard_since: datetime | None = None,
    grace: timedelta = timedelta(0),
) -> int:
    """Take silent agents offline and take back assignments nobody accepted or that are past
    their deadline by `grace` (the sidecar stops at the deadline itself and its report, with
    what it did, should win); returns how many.

    The queue hears first, then the agent row changes: if the queue cannot be reached the agent
    keeps its task and the next pass tries again, so no assignment is ever orphaned. A repeat
    after a crash is harmless: the queue acknowledges the same report at the same generation once.

    Reports still waiting for this consumer are not held against the agents: with the oldest
    undelivered report `lag` old, every report sent before then has been applied, so an agent
    is silent only if its last heartbeat is older than both `silence` and `lag + interval`
    (the heartbeat after it would have been sent by then, and applied); an assignment is
    unaccepted only if older than both `accept` and `lag`. A backlog thus delays judgement by
    what it may hide and no more (a backlog used to stop the judging altogether: a heartbeat
    or an `accepted` still queued would make a live agent look silent).

    `heard_since` is when this process began reading reports (`Gate.reading_since`): silence
    and waiting count from no earlier than that. A scheduler that was down did not see what
    happened meanwhile (NATS may have been down too, and an agent cannot log in while no
    scheduler answers the login callout), and a batch it fetched but has not applied yet is
    invisible to `lag`: so a restarted scheduler gives every agent a full `silence` (and every
    assignment a full `accept`) from its first read. None: no such limit (a caller that
    drives the sweep itself).
    """
    changed = 0
    lag = timedelta(seconds=await report_lag(js))
    beat = interval if interval is not None else silence
    if lag + beat > silence:  # we are late, not the agents: judge only what the lag cannot hide
        log.warning("sweep.presence_deferred", extra={"lag_s": lag.total_seconds()})
    async with s.engine.begin() as conn:
        now = clock.now()
        quiet_cutoff = now - max(silence, lag + beat)
        silent = (
            await store.silent_since(conn, quiet_cutoff)
            if _observed(heard_since, quiet_cutoff)
            else []
        )
        for row in silent:
            quiet = (clock.now() - row.last_beat).total_seconds() if row.last_beat else None
            log.warning("agent.silent", extra={"agent_id": row.id, "silent_s": quiet})
            if row.task_id is not None and not await hand_back(nc, row, "failed"):
                continue
            meters.silent.add(1)
            await transition_if(
                s,
                conn,
                row.id,
                AgentState(row.state),
                AgentState.OFFLINE,
                "missed heartbeats",
                subjects.AGENT_OFFLINE,
            )
            changed += 1
        accept_cutoff = clock.now() - max(accept, lag)
        unaccepted = (
            await store.unaccepted_since(conn, accept_cutoff)
            if _observed(heard_since, accept_cutoff)
            else []
        )
        for row in unaccepted:
            # only while still unaccepted: an `accepted` that won the race has told the agent
            # to start, and giving the task to another agent then would run it twice
            if not await hand_back(nc, row, "requeue", unaccepted_only=True):
                continue
            await transition_if(
                s,
                conn,
                row.id,
                AgentState.ASSIGNED,
                AgentState.IDLE,
                f"{row.task_id} not accepted in time",
                subjects.AGENT_IDLE,
            )
            changed += 1
        for row in await store.overdue(conn, clock.now() - grace):
            if not await hand_back(nc, row, "overdue"):
                continue
            cancel = Cancel(task_id=row.task_id, generation=row.generation, reason="deadline")
            await messaging.publish(js, subjects.agent_inbox(row.id), cancel)
            await transition_if(
                s,
                conn,
                row.id,
                AgentState(row.state),
                AgentState.IDLE,
                f"{row.task_id} past its deadline",
                subjects.AGENT_IDLE,
            )
            changed += 1
    return changed


def _observed(heard_since: datetime | None, cutoff: datetime) -> bool:
    """Whether this process has been reading reports since before `cutoff`: only then can
    silence (or a missing `accepted`) older than `cutoff` be its own observation."""
    return heard_since is None or heard_since < cutoff


DETECTION_MARGIN = 0.2
"""Share of one heartbeat interval by which the offline decision comes before `missed`
intervals have passed since the agent's last heartbeat, so that its task is back in the queue
(report, event) within `missed` intervals, as issue 5 measures detection. A live agent is
never at risk: its next heartbeat is due `missed - 1` intervals before that."""


def silence_for(interval: timedelta, missed: int) -> timedelta:
    """How long after its last heartbeat an agent is taken offline."""
    return interval * missed - interval * DETECTION_MARGIN


async def sweep_forever(
    s: ops.Scheduler,
    nc: Client,
    js: JetStreamContext,
    silence: timedelta,
    accept: timedelta,
    every: timedelta,
    interval: timedelta | None = None,
    gate: Gate | None = None,
    grace: timedelta = timedelta(0),
) -> None:
    """Sweep every `every`, and at the moment the next agent falls silent (the oldest last
    heartbeat + `silence`): detection does not wait for the next tick. With the report
    consumer's `gate`, nothing is judged before its first read, and silence counts from then."""
    retried: datetime | None = None
    while True:
        pause = every.total_seconds()
        started = time.perf_counter()
        try:
            # before the consumer's first read: "since now", so nobody is judged yet
            since = None if gate is None else gate.reading_since or clock.now()
            await sweep(s, nc, js, silence, accept, interval, since, grace)
            pause, retried = await _until_silent(s, silence, every, retried, since)
        except Exception:  # a failed pass is retried by the next one
            log.exception("sweep.failed")
        if log.isEnabledFor(logging.DEBUG):
            took = round((time.perf_counter() - started) * 1000, 2)
            log.debug("sweep.pass", extra={"ms": took, "pause_s": round(pause, 3)})
        await asyncio.sleep(pause)


async def _until_silent(
    s: ops.Scheduler,
    silence: timedelta,
    every: timedelta,
    retried: datetime | None,
    heard_since: datetime | None = None,
) -> tuple[float, datetime | None]:
    """Seconds until the next sweep: when the quietest agent passes `silence`, and at most
    `every` or `silence` (an agent that comes online meanwhile falls silent `silence` after
    it at the earliest). An agent that fell silent while the pass ran is judged at once; one
    still there after that retry (its hand-back failed, a backlog may hide its heartbeat)
    waits for the regular pass. Returns the pause and the last beat retried at once."""
    longest = min(every, silence).total_seconds()
    async with s.engine.connect() as conn:
        oldest = await store.oldest_beat(conn)
    if oldest is None:
        return longest, None
    if heard_since is not None:  # nobody's silence counts from before the first read
        oldest = max(oldest, heard_since)
    due = (oldest + silence - clock.now()).total_seconds()
    if due <= 0:
        return (longest, retried) if oldest == retried else (0.0, oldest)
    return min(longest, due + 0.001), None  # just past it: `last_beat < cutoff`
