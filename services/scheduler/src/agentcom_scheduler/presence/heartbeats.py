"""Heartbeats of many agents in one statement: presence refreshed, offline agents online,
idle and blocked following what the heartbeats say."""

import logging
from collections.abc import Collection

from nats.aio.msg import Msg
from sqlalchemy.ext.asyncio import AsyncConnection

from agentcom_common import consumer, subjects
from agentcom_common.contracts.agent import (
    AgentState,
    Heartbeat,
)
from agentcom_scheduler import batch, limits, ops
from agentcom_scheduler.limits import RateClass
from agentcom_scheduler.presence.core import resources_of, retry_all

log = logging.getLogger("agentcom_scheduler.presence")  # one name for all of presence


async def beat_many(
    s: ops.Scheduler,
    beats: list[tuple[Msg, Heartbeat]],
    admitted: limits.Admission | None,
    settler: consumer.Settler,
) -> None:
    try:
        counted = counted_beats(admitted, [b for _, b in beats])
        if counted:
            async with s.engine.begin() as conn:
                await _apply_beats(s, conn, counted)
    except Exception:  # Postgres away: leave them for redelivery
        log.exception("reports.heartbeats_failed")
        await retry_all(settler, [m for m, _ in beats])
        return
    for msg, _ in beats:  # over the rate: dropped, like any light report
        await msg.ack()


def wanted_beats(beats: list[Heartbeat]) -> dict[tuple[str, RateClass], int]:
    """The light tokens `beats` want: one per heartbeat, by agent."""
    wanted: dict[tuple[str, RateClass], int] = {}
    for b in beats:
        wanted[(b.agent_id, "light")] = wanted.get((b.agent_id, "light"), 0) + 1
    return wanted


def counted_beats(admitted: limits.Admission | None, beats: list[Heartbeat]) -> list[Heartbeat]:
    """The heartbeats the agents' light buckets took (`admitted`, the batch's gate; None: no
    limits); the rest are over the rate."""
    if admitted is None:
        return beats
    left = {agent: n for (agent, tier), n in admitted.got.items() if tier == "light"}
    counted: list[Heartbeat] = []
    for b in beats:  # each agent's first ones, as many as its bucket gave
        if left.get(b.agent_id, 0) > 0:
            left[b.agent_id] -= 1
            counted.append(b)
    return counted


async def _apply_beats(s: ops.Scheduler, conn: AsyncConnection, beats: list[Heartbeat]) -> None:
    """Refresh many agents' presence in one go; those that were offline come online."""
    latest: dict[str, dict[str, object] | None] = {b.agent_id: resources_of(b) for b in beats}
    blocked = {b.agent_id: b.blocked for b in beats}
    await seen_many(s, conn, latest, dict.fromkeys(latest, "heartbeat"), latest, blocked)


async def seen_many(
    s: ops.Scheduler,
    conn: AsyncConnection,
    resources: dict[str, dict[str, object] | None],
    reasons: dict[str, str],
    beats: Collection[str],
    blocked: dict[str, str | None],
) -> dict[str, AgentState]:
    """`batch.seen_many`, then the offline ones come online (`reasons[agent]` in their history);
    returns each known agent's state as it was."""
    known = await batch.seen_many(conn, resources, beats)
    online = [a for a, state in known.items() if state is AgentState.OFFLINE]
    await batch.transition_many(
        s,
        conn,
        [
            batch.Move(a, AgentState.OFFLINE, AgentState.IDLE, reasons[a], subjects.AGENT_ONLINE)
            for a in online
        ],
    )
    now = known | dict.fromkeys(online, AgentState.IDLE)
    await follow_blocked(s, conn, now, {a: blocked[a] for a in blocked if a in now})
    return known


async def follow_blocked(
    s: ops.Scheduler,
    conn: AsyncConnection,
    state_of: dict[str, AgentState],
    said: dict[str, str | None],
) -> None:
    """Follow what the agents' heartbeats say: one that cannot take work (`blocked`, with why)
    goes from idle to blocked, one blocked whose heartbeat no longer says so is idle again.

    Level, not edge: every heartbeat says it, so a lost report, an assignment that crossed
    the first blocked heartbeat (rejected `agent_blocked`, see `_refused`) or a restarted
    scheduler is set right by the next one. An agent busy with a task keeps it; it is judged
    when it is idle again. Matching's cached view of idle agents is refreshed so a blocked
    agent is not offered work from it."""
    moves: list[batch.Move] = []
    for agent, why in said.items():
        state = state_of.get(agent)
        if why is not None and state is AgentState.IDLE:
            moves.append(batch.Move(agent, state, AgentState.BLOCKED, why, subjects.AGENT_BLOCKED))
        elif why is None and state is AgentState.BLOCKED:
            ready = "ready: its sidecar can take work again"
            moves.append(batch.Move(agent, state, AgentState.IDLE, ready, subjects.AGENT_READY))
    if moves:
        await batch.transition_many(s, conn, moves)
        s.wakeups.matching(refresh=True)
