"""Improving cycles and their findings (`hub.improvements`, `hub.findings`): all their SQL.

A cycle is keyed by the improving stay's `entered_at`, like a contemplation cycle: a brain that
restarts or takes over finds the cycle of the stay it resumes, with the scan tasks it already
submitted (their `client_key`s make a second submit return the same tasks).
"""

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from agentcom_common.contracts.hub import HubState
from agentcom_common.contracts.scan import (
    CycleSummary,
    CycleView,
    FindingState,
    FindingView,
    RepoScan,
    ScanFinding,
    normal_file,
)
from agentcom_hubfsm.improving.choose import Decision, Kept
from agentcom_hubfsm.settings import HubSettings
from agentcom_hubfsm.tables import findings, hub, improvements


def new_id() -> str:
    return f"find-{secrets.token_hex(8)}"


async def start_cycle(conn: AsyncConnection, entered_at: datetime) -> Row[Any]:
    await conn.execute(
        insert(improvements)
        .values(entered_at=entered_at)
        .on_conflict_do_nothing(index_elements=["entered_at"])
    )
    return (
        await conn.execute(select(improvements).where(improvements.c.entered_at == entered_at))
    ).one()


async def set_tasks(conn: AsyncConnection, cycle: int, tasks: dict[str, str]) -> None:
    await conn.execute(update(improvements).where(improvements.c.id == cycle).values(tasks=tasks))


async def end_cycle(
    conn: AsyncConnection,
    cycle: int,
    outcome: str,
    report: str,
    summary: CycleSummary | None = None,
) -> None:
    values: dict[str, Any] = {"outcome": outcome, "report": report[:4000], "ended_at": func.now()}
    if summary is not None:
        values["summary"] = summary.model_dump(mode="json")
    await conn.execute(
        update(improvements)
        .where(improvements.c.id == cycle, improvements.c.ended_at.is_(None))
        .values(**values)
    )


@dataclass(frozen=True, slots=True)
class Pace:
    """Whether improving may run: on, with `interval` passed since the last cycle ended."""

    enabled: bool
    interval: timedelta

    @classmethod
    def of(cls, s: HubSettings) -> "Pace":
        return cls(s.hub_improving_enabled, s.hub_improving_interval)


async def due(conn: AsyncConnection, pace: Pace) -> bool:
    """A cycle may start now: improving is on, none is running, the last ended long enough ago."""
    if not pace.enabled:
        return False
    row = (
        await conn.execute(
            select(
                func.max(improvements.c.ended_at).label("since"),
                func.count().filter(improvements.c.ended_at.is_(None)).label("running"),
                func.now().label("now"),
            )
        )
    ).one()
    return int(row.running) == 0 and (row.since is None or row.since + pace.interval <= row.now)


async def left(conn: AsyncConnection, pace: Pace) -> int:
    """Improving's work left in the hub's current improving stay: 1 until that stay's cycle has
    ended (not started yet, or scanning), then 0 (its kept findings are goals by then); 0 when
    the hub is not improving or scanning is off (no cycle runs: contemplation may follow)."""
    if not pace.enabled:
        return 0
    ended = (
        await conn.execute(
            select(improvements.c.ended_at)
            .select_from(hub)
            .outerjoin(improvements, improvements.c.entered_at == hub.c.entered_at)
            .where(hub.c.state == HubState.IMPROVING.value)
        )
    ).one_or_none()
    if ended is None:
        return 0
    return 0 if ended.ended_at is not None else 1


async def history(conn: AsyncConnection, repos: list[str], limit: int = 500) -> list[Kept]:
    """The repos' kept findings, newest first."""
    rows = await conn.execute(
        select(findings)
        .where(findings.c.repo.in_(repos), findings.c.kept.is_(True))
        .order_by(findings.c.seq.desc())
        .limit(limit)
    )
    return [
        Kept.of(r.id, r.repo, ScanFinding.model_validate(r.finding), r.created_at) for r in rows
    ]


async def add(
    conn: AsyncConnection, cycle: int, decision: Decision, goal_id: str | None, finding_id: str
) -> None:
    f = decision.finding
    await conn.execute(
        insert(findings).values(
            id=finding_id,
            cycle=cycle,
            repo=decision.repo,
            fingerprint=f.fingerprint,
            finding=f.model_dump(mode="json"),
            files=sorted({normal_file(p) for p in f.files}),
            kept=decision.kept,
            reason=decision.reason[:1000],
            goal_id=goal_id,
        )
    )


async def page(
    conn: AsyncConnection, *, repo: str | None, kept: bool | None, cursor: str | None, limit: int
) -> tuple[list[FindingView], str | None]:
    """Newest first; `next_cursor` is the last one's `seq`."""
    stmt = select(findings).order_by(findings.c.seq.desc()).limit(limit + 1)
    if repo is not None:
        stmt = stmt.where(findings.c.repo == repo)
    if kept is not None:
        stmt = stmt.where(findings.c.kept.is_(kept))
    if cursor is not None:
        stmt = stmt.where(findings.c.seq < int(cursor))
    rows = (await conn.execute(stmt)).all()
    more, rows = len(rows) > limit, rows[:limit]
    return [view(r) for r in rows], str(rows[-1].seq) if more and rows else None


async def get(conn: AsyncConnection, finding_id: str) -> FindingView | None:
    row = (await conn.execute(select(findings).where(findings.c.id == finding_id))).one_or_none()
    return None if row is None else view(row)


def view(row: Row[Any]) -> FindingView:
    return FindingView.model_validate(
        dict(row.finding)
        | {
            "id": row.id,
            "repo": row.repo,
            "cycle": row.cycle,
            "state": FindingState.KEPT if row.kept else FindingState.DROPPED,
            "reason": row.reason,
            "goal_id": row.goal_id,
            "created_at": row.created_at,
        }
    )


async def cycles(
    conn: AsyncConnection, *, cursor: str | None, limit: int
) -> tuple[list[CycleView], str | None]:
    """Newest first; `next_cursor` is the last one's id."""
    stmt = select(improvements).order_by(improvements.c.id.desc()).limit(limit + 1)
    if cursor is not None:
        stmt = stmt.where(improvements.c.id < int(cursor))
    rows = (await conn.execute(stmt)).all()
    more, rows = len(rows) > limit, rows[:limit]
    return [cycle_view(r) for r in rows], str(rows[-1].id) if more and rows else None


async def cycle(conn: AsyncConnection, cycle_id: int) -> CycleView | None:
    row = (
        await conn.execute(select(improvements).where(improvements.c.id == cycle_id))
    ).one_or_none()
    return None if row is None else cycle_view(row)


def cycle_view(row: Row[Any]) -> CycleView:
    """A running cycle has no summary yet: its repos are the scans it submitted."""
    summary = CycleSummary.model_validate(row.summary or {})
    if row.ended_at is None and not summary.repos:
        scans = [RepoScan(repo=r, task_id=t, state="scanning") for r, t in dict(row.tasks).items()]
        summary = summary.model_copy(update={"repos": scans})
    return CycleView.model_validate(
        summary.model_dump()
        | {
            "id": row.id,
            "outcome": row.outcome,
            "report": row.report,
            "started_at": row.started_at,
            "ended_at": row.ended_at,
        }
    )
