"""Healing runs and their actions (`hub.healing_runs`, `hub.healing_actions`), and the brakes
read from them: the cooldown after a run and the attempts in the window.

A run is keyed by the healing stay's `entered_at`: a brain that restarts or takes over finds
the run of the stay it resumes, and the actions already taken are in its rows (each remedy's
rate limit reads them, so none is taken twice).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from agentcom_common import outbox, subjects
from agentcom_common.contracts.alert import Severity
from agentcom_common.contracts.health import (
    HealingAction,
    HealingEnded,
    HealingRun,
    HealingStarted,
    HealthIssue,
    RunOutcome,
)
from agentcom_hubfsm.settings import HubSettings
from agentcom_hubfsm.tables import healing_actions, healing_runs, outbox_table


@dataclass(frozen=True, slots=True)
class Policy:
    """Healing's brakes (the inventory's defaults)."""

    cooldown: timedelta = timedelta(minutes=5)
    attempts: int = 3
    window: timedelta = timedelta(minutes=10)

    @classmethod
    def of(cls, s: HubSettings) -> "Policy":
        return cls(s.hub_healing_cooldown, s.hub_healing_attempts, s.hub_healing_window)


DEFAULT: Final = Policy()


@dataclass(frozen=True, slots=True)
class Brakes:
    cooldown_until: datetime | None
    attempts: int
    cooling: bool
    exhausted: bool


async def brakes(conn: AsyncConnection, p: Policy) -> Brakes:
    """Whether a new run may start now: not before the last run's end + cooldown, and only
    while fewer than `attempts` runs started in the window (a dry run counts too)."""
    row = (
        await conn.execute(
            select(
                func.max(healing_runs.c.ended_at).label("last_end"),
                func.count()
                .filter(healing_runs.c.started_at > func.now() - p.window)
                .label("recent"),
                func.now().label("now"),
            )
        )
    ).one()
    until = None if row.last_end is None else row.last_end + p.cooldown
    return Brakes(
        cooldown_until=until,
        attempts=int(row.recent),
        cooling=until is not None and until > row.now,
        exhausted=int(row.recent) >= p.attempts,
    )


async def start_run(
    conn: AsyncConnection, entered_at: datetime, issues: list[HealthIssue], dry_run: bool
) -> tuple[int, bool]:
    """The run of the stay entered at `entered_at` (made now if new, with its `started`
    event); (id, made)."""
    made = await conn.execute(
        insert(healing_runs)
        .values(
            entered_at=entered_at,
            outcome="running",
            dry_run=dry_run,
            issues=[i.model_dump(mode="json") for i in issues],
        )
        .on_conflict_do_nothing(index_elements=[healing_runs.c.entered_at])
        .returning(healing_runs.c.id, healing_runs.c.started_at)
    )
    if (row := made.one_or_none()) is not None:
        event = HealingStarted(run_id=row.id, issues=issues, dry_run=dry_run, at=row.started_at)
        await outbox.add(conn, outbox_table, subjects.HUB_HEALING_STARTED, event)
        return row.id, True
    found = await conn.execute(
        select(healing_runs.c.id).where(healing_runs.c.entered_at == entered_at)
    )
    return found.scalar_one(), False


async def record(conn: AsyncConnection, action: HealingAction) -> None:
    """One action with its event, in the caller's transaction."""
    values = action.model_dump(mode="json", exclude={"schema_version", "at", "runbook"})
    await conn.execute(insert(healing_actions).values(values))
    await outbox.add(conn, outbox_table, subjects.HUB_HEALING_ACTED, action)


async def acted_at(
    conn: AsyncConnection, action: str, target: str, window: timedelta
) -> datetime | None:
    """When `action` last really acted on `target` within `window` (dry runs do not count)."""
    found = await conn.execute(
        select(func.max(healing_actions.c.at)).where(
            healing_actions.c.action == action,
            healing_actions.c.target == target,
            healing_actions.c.outcome == "done",
            healing_actions.c.dry_run.is_(False),
            healing_actions.c.at > func.now() - window,
        )
    )
    return found.scalar_one_or_none()


async def end_run(
    conn: AsyncConnection, entered_at: datetime, outcome: RunOutcome, report: str
) -> bool:
    """End the stay's run (once: False if it had ended) and publish `healing.ended`; a
    `watchdog` end is critical."""
    ended = await conn.execute(
        update(healing_runs)
        .where(healing_runs.c.entered_at == entered_at, healing_runs.c.ended_at.is_(None))
        .values(ended_at=func.now(), outcome=outcome, report=report)
        .returning(healing_runs.c.id, healing_runs.c.ended_at)
    )
    row = ended.one_or_none()
    if row is None:
        return False
    count = await conn.execute(select(func.count()).where(healing_actions.c.run_id == row.id))
    event = HealingEnded(
        run_id=row.id,
        outcome=outcome,
        severity=Severity.CRITICAL if outcome == "watchdog" else Severity.WARNING,
        report=report,
        actions=count.scalar_one(),
        at=row.ended_at,
    )
    await outbox.add(conn, outbox_table, subjects.HUB_HEALING_ENDED, event)
    return True


def _action(r: Any) -> HealingAction:
    return HealingAction(
        run_id=r.run_id,
        category=r.category,
        action=r.action,
        target=r.target,
        outcome=r.outcome,
        detail=r.detail,
        evidence=r.evidence,
        dry_run=r.dry_run,
        at=r.at,
    )


async def page(
    conn: AsyncConnection, *, cursor: str | None, limit: int
) -> tuple[list[HealingRun], str | None]:
    """Runs newest first with their actions; `next_cursor` is the last one's id."""
    stmt = select(healing_runs).order_by(healing_runs.c.id.desc()).limit(limit + 1)
    if cursor is not None:
        stmt = stmt.where(healing_runs.c.id < int(cursor))
    rows = (await conn.execute(stmt)).all()
    more, rows = len(rows) > limit, rows[:limit]
    acts = await conn.execute(
        select(healing_actions)
        .where(healing_actions.c.run_id.in_([r.id for r in rows]))
        .order_by(healing_actions.c.id)
    )
    by_run: dict[int, list[HealingAction]] = {}
    for a in acts:
        by_run.setdefault(a.run_id, []).append(_action(a))
    runs = [
        HealingRun(
            id=r.id,
            started_at=r.started_at,
            ended_at=r.ended_at,
            outcome=r.outcome,
            dry_run=r.dry_run,
            issues=[HealthIssue.model_validate(i) for i in r.issues],
            actions=by_run.get(r.id, []),
            report=r.report,
        )
        for r in rows
    ]
    return runs, str(rows[-1].id) if more and rows else None
