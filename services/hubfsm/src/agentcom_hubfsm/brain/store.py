"""The hub row: read it, move it (through the common transition writer), pause it, lead it,
page its history. Every write locks the one row first, so the brain's pass and a person's
pause or stop (on any replica) take turns."""

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from agentcom_common import outbox, subjects, transitions
from agentcom_common.contracts.hub import (
    HubMove,
    HubPauseChanged,
    HubState,
    HubStateChanged,
    HubView,
    HubWatchdogFired,
)
from agentcom_hubfsm.brain import states
from agentcom_hubfsm.brain.signals import Signals
from agentcom_hubfsm.tables import hub, hub_history, outbox_table

HUB_ID = "hub"


def _event(
    moved: transitions.Moved[HubState], to: HubState, reason: str, actor: str
) -> tuple[str, HubStateChanged]:
    body = HubStateChanged(
        state=to,
        at=moved.at,
        from_state=moved.previous,
        reason=reason,
        actor=actor,
        cycle=moved.row.cycle,
    )
    return subjects.HUB_STATE_CHANGED, body


MACHINE = transitions.Machine(
    name="hub",
    states=HubState,
    transitions=states.TRANSITIONS,
    table=hub,
    history=hub_history,
    key="hub_id",
    outbox=outbox_table,
    event=_event,
)


async def load(conn: AsyncConnection, *, lock: bool = False) -> Row[Any]:
    """The hub row with the transaction's `now` (the database clock every deadline uses)."""
    stmt = select(hub, func.now().label("now")).where(hub.c.id == HUB_ID)
    if lock:
        stmt = stmt.with_for_update(of=hub)
    return (await conn.execute(stmt)).one()


def _seconds(row: Row[Any]) -> dict[str, float]:
    """Seconds per state with the current stay counted up to the row's `now`."""
    totals = {s.value: float(row.seconds.get(s.value, 0.0)) for s in HubState}
    totals[row.state] += max(0.0, (row.now - row.entered_at).total_seconds())
    return totals


async def move(
    conn: AsyncConnection,
    row: Row[Any],
    to: HubState,
    *,
    reason: str,
    actor: str,
    watchdog: timedelta,
) -> transitions.Moved[HubState]:
    """Move the hub from the locked `row` to `to`: a new stay (entered now), the time of the
    last one added to its state, a cycle counted on resting -> executing/improving, and the
    watchdog re-armed (none in resting)."""
    came = HubState(row.state)
    cycle = row.cycle + (1 if came is HubState.RESTING and to in states.CYCLE_STARTS else 0)
    values = {
        "entered_at": func.now(),
        "seconds": _seconds(row),
        "cycle": cycle,
        "reason": reason,
        "watchdog_at": None if to is HubState.RESTING else func.now() + watchdog,
        "work": None,
    }
    return await transitions.move(
        conn,
        MACHINE,
        HUB_ID,
        to,
        reason=reason,
        actor=actor,
        values=values,
        sources=frozenset({came}),
    )


async def fire_watchdog(conn: AsyncConnection, row: Row[Any], watchdog: timedelta) -> None:
    """Force resting from the locked `row`, whose deadline passed, and publish the alert."""
    came = HubState(row.state)
    moved = await move(
        conn, row, HubState.RESTING, reason="watchdog", actor="watchdog", watchdog=watchdog
    )
    minutes = (row.watchdog_at - row.entered_at).total_seconds() / 60
    fired = HubWatchdogFired(
        watchdog="healing" if came is HubState.HEALING else "global",
        from_state=came,
        state=HubState.RESTING,
        entered_at=row.entered_at,
        deadline=row.watchdog_at,
        at=moved.at,
        message=f"the hub stayed {came.value} past its {minutes:g} min watchdog; forced resting"
        + (" (a healing run hung; see GET /api/hub/healing)" if came is HubState.HEALING else ""),
    )
    await outbox.add(conn, outbox_table, subjects.HUB_WATCHDOG_FIRED, fired)


async def set_paused(
    conn: AsyncConnection, row: Row[Any], paused: bool, *, reason: str, actor: str
) -> bool:
    """Pause or resume the locked `row`; False when it already was (nothing is written)."""
    if row.paused == paused:
        return False
    await conn.execute(update(hub).where(hub.c.id == HUB_ID).values(paused=paused))
    event = HubPauseChanged(
        paused=paused, state=HubState(row.state), reason=reason, actor=actor, at=row.now
    )
    await outbox.add(
        conn, outbox_table, subjects.HUB_PAUSED if paused else subjects.HUB_RESUMED, event
    )
    return True


async def set_leader(
    conn: AsyncConnection, instance: str | None, *, was: str | None = None
) -> None:
    """Name the active brain (None: it stopped); with `was`, only if the row still names it."""
    stmt = update(hub).where(hub.c.id == HUB_ID)
    if was is not None:
        stmt = stmt.where(hub.c.leader == was)
    await conn.execute(stmt.values(leader=instance, leader_at=func.now()))


async def set_work(
    conn: AsyncConnection, state: HubState, entered_at: datetime, work: str | None
) -> None:
    """Record the entry work running (None: none) for one stay, if the hub is still in it."""
    await conn.execute(
        update(hub)
        .where(hub.c.id == HUB_ID, hub.c.state == state.value, hub.c.entered_at == entered_at)
        .values(work=work)
    )


def view(row: Row[Any], signals: Signals) -> HubView:
    return HubView(
        state=HubState(row.state),
        since=row.entered_at,
        reason=row.reason,
        paused=row.paused,
        cycle=row.cycle,
        seconds_in_state={HubState(k): v for k, v in _seconds(row).items()},
        watchdog_at=row.watchdog_at,
        work=row.work,
        leader=row.leader,
        goals_pending=signals.goals_pending,
        goals_active=signals.goals_active,
    )


async def page_history(
    conn: AsyncConnection, *, cursor: str | None, limit: int
) -> tuple[list[HubMove], str | None]:
    """Moves newest first; `next_cursor` is the last one's id."""
    stmt = select(hub_history).order_by(hub_history.c.id.desc()).limit(limit + 1)
    if cursor is not None:
        stmt = stmt.where(hub_history.c.id < int(cursor))
    rows = (await conn.execute(stmt)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    moves = [
        HubMove(
            id=r.id,
            from_state=r.from_state,
            to_state=r.to_state,
            reason=r.reason,
            actor=r.actor,
            at=r.at,
        )
        for r in rows
    ]
    return moves, str(rows[-1].id) if more and rows else None
