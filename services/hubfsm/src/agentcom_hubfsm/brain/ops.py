"""What a person (HTTP) or a service (NATS) may do to the hub brain: read it, page its
history, pause, resume, stop, start. Any replica answers: everything is in the hub row, and
each write locks it, so it takes turns with the active brain's pass."""

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common.contracts.health import HealingPage, HealthReport
from agentcom_common.contracts.hub import HubHistoryPage, HubState, HubView
from agentcom_hubfsm.brain import signals, store
from agentcom_hubfsm.contemplation import store as contemplation_store
from agentcom_hubfsm.healing import store as healing_store
from agentcom_hubfsm.health import monitor
from agentcom_hubfsm.improving import store as improving_store


@dataclass(frozen=True, slots=True)
class Hub:
    engine: AsyncEngine
    wake: asyncio.Event  # this process's brain; another replica's notices on its next tick
    watchdog: timedelta
    healing: healing_store.Policy = healing_store.DEFAULT
    contemplation: contemplation_store.Pace | None = None  # when cycles are due (a signal)
    improving: improving_store.Pace | None = None


async def state(h: Hub) -> HubView:
    async with h.engine.connect() as conn:
        row = await store.load(conn)
        return store.view(row, await signals.gather(conn, h.healing, h.contemplation, h.improving))


async def history(h: Hub, cursor: str | None, limit: int) -> HubHistoryPage:
    async with h.engine.connect() as conn:
        moves, next_cursor = await store.page_history(conn, cursor=cursor, limit=limit)
    return HubHistoryPage(moves=moves, next_cursor=next_cursor)


async def health(h: Hub) -> HealthReport:
    async with h.engine.connect() as conn:
        found = await monitor.current(conn)
        brakes = await healing_store.brakes(conn, h.healing)
    return HealthReport(
        assessed_at=found.assessed_at,
        issues=found.issues,
        critical=found.critical,
        healing_cooldown_until=brakes.cooldown_until,
        healing_attempts=brakes.attempts,
        healing_exhausted=brakes.exhausted,
    )


async def healing(h: Hub, cursor: str | None, limit: int) -> HealingPage:
    async with h.engine.connect() as conn:
        runs, next_cursor = await healing_store.page(conn, cursor=cursor, limit=limit)
    return HealingPage(runs=runs, next_cursor=next_cursor)


async def pause(h: Hub, reason: str, actor: str) -> HubView:
    """Pause: the brain stops moving the hub (its watchdog still forces resting). Pausing a
    paused hub changes nothing."""
    async with h.engine.begin() as conn:
        row = await store.load(conn, lock=True)
        await store.set_paused(conn, row, True, reason=reason or "paused", actor=actor)
    return await state(h)


async def resume(h: Hub, reason: str, actor: str) -> HubView:
    """Resume: the brain applies its rules again, at once. Resuming a running hub changes
    nothing."""
    async with h.engine.begin() as conn:
        row = await store.load(conn, lock=True)
        await store.set_paused(conn, row, False, reason=reason or "resumed", actor=actor)
    h.wake.set()
    return await state(h)


async def stop(h: Hub, reason: str, actor: str) -> HubView:
    """Stop: force resting (a move recorded with the reason) and pause. Stopping a stopped hub
    changes nothing."""
    why = f"stopped: {reason}" if reason else "stopped"
    async with h.engine.begin() as conn:
        row = await store.load(conn, lock=True)
        if row.state != HubState.RESTING:
            await store.move(
                conn, row, HubState.RESTING, reason=why, actor=actor, watchdog=h.watchdog
            )
            row = await store.load(conn, lock=True)
        await store.set_paused(conn, row, True, reason=why, actor=actor)
    h.wake.set()  # the brain ends the entry work of the state it left
    return await state(h)


async def start(h: Hub, reason: str, actor: str) -> HubView:
    """Start: the counterpart of stop; resume, so the rules run again from resting."""
    return await resume(h, reason or "started", actor)
