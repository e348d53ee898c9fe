"""Contemplation cycles and proposals (`hub.contemplations`, `hub.proposals`): all their SQL.

A cycle is keyed by the contemplating stay's `entered_at`, like a healing run: a brain that
restarts or takes over finds the cycle of the stay it resumes and does not propose twice. A
proposal moves once, from `pending` to `accepted` or `rejected`, under its row lock and a
`WHERE state = 'pending'` guard.
"""

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from agentcom_common.contracts.proposal import (
    MAX_PER_CYCLE,
    ProposalDraft,
    ProposalState,
    ProposalView,
)
from agentcom_hubfsm.settings import HubSettings
from agentcom_hubfsm.tables import contemplations, hub_history, proposals


def new_id() -> str:
    return f"prop-{secrets.token_hex(8)}"


async def start_cycle(conn: AsyncConnection, entered_at: datetime, repo: str | None) -> Row[Any]:
    """The cycle of this stay, made if it is the first time (a resumed stay finds its own)."""
    await conn.execute(
        insert(contemplations)
        .values(entered_at=entered_at, repo=repo)
        .on_conflict_do_nothing(index_elements=["entered_at"])
    )
    return (
        await conn.execute(select(contemplations).where(contemplations.c.entered_at == entered_at))
    ).one()


async def end_cycle(
    conn: AsyncConnection, cycle: int, outcome: str, report: str, analysis: dict[str, Any]
) -> None:
    await conn.execute(
        update(contemplations)
        .where(contemplations.c.id == cycle, contemplations.c.ended_at.is_(None))
        .values(outcome=outcome, report=report[:4000], analysis=analysis, ended_at=func.now())
    )


@dataclass(frozen=True, slots=True)
class Pace:
    """How often cycles may come: `interval` after the last one ended (or after the hub's first
    start, so a new hub does not contemplate before it has done anything), and only while
    fewer than `pending` proposals wait for a person (more would pile up unread)."""

    interval: timedelta
    pending: int = MAX_PER_CYCLE

    @classmethod
    def of(cls, s: HubSettings) -> "Pace":
        return cls(s.hub_contemplation_interval, s.hub_contemplation_max_proposals)


async def due(conn: AsyncConnection, pace: Pace) -> bool:
    """Whether a new cycle may start now (`Pace`), none running."""
    first_start = select(func.min(hub_history.c.at)).scalar_subquery()
    waiting = (
        select(func.count())
        .select_from(proposals)
        .where(proposals.c.state == ProposalState.PENDING.value)
        .scalar_subquery()
    )
    row = (
        await conn.execute(
            select(
                func.coalesce(func.max(contemplations.c.ended_at), first_start).label("since"),
                func.count().filter(contemplations.c.ended_at.is_(None)).label("running"),
                waiting.label("waiting"),
                func.now().label("now"),
            )
        )
    ).one()
    return (
        int(row.running) == 0
        and int(row.waiting) < pace.pending
        and row.since is not None
        and row.since + pace.interval <= row.now
    )


async def last_contemplated(conn: AsyncConnection) -> dict[str, datetime]:
    rows = await conn.execute(
        select(contemplations.c.repo, func.max(contemplations.c.started_at))
        .where(contemplations.c.repo.is_not(None))
        .group_by(contemplations.c.repo)
    )
    return {str(repo): at for repo, at in rows}


async def add(
    conn: AsyncConnection, cycle: int, repo: str, drafts: list[ProposalDraft]
) -> list[str]:
    ids: list[str] = []
    for draft in drafts:
        ids.append(new_id())
        await conn.execute(
            insert(proposals).values(
                id=ids[-1],
                cycle=cycle,
                state=ProposalState.PENDING.value,
                repo=repo,
                draft=draft.model_dump(mode="json"),
            )
        )
    return ids


async def get(conn: AsyncConnection, proposal_id: str, *, lock: bool = False) -> Row[Any] | None:
    stmt = select(proposals).where(proposals.c.id == proposal_id)
    return (await conn.execute(stmt.with_for_update() if lock else stmt)).one_or_none()


async def decide(
    conn: AsyncConnection,
    proposal_id: str,
    to: ProposalState,
    *,
    actor: str,
    reason: str,
    goal_id: str | None = None,
) -> Row[Any] | None:
    """Move a pending proposal; None: it was not pending (someone decided first)."""
    return (
        await conn.execute(
            update(proposals)
            .where(proposals.c.id == proposal_id, proposals.c.state == ProposalState.PENDING)
            .values(
                state=to.value,
                reason=reason,
                decided_by=actor,
                decided_at=func.now(),
                goal_id=goal_id,
            )
            .returning(*proposals.c)
        )
    ).one_or_none()


async def page(
    conn: AsyncConnection, *, state: ProposalState | None, cursor: str | None, limit: int
) -> tuple[list[ProposalView], str | None]:
    """Newest first; `next_cursor` is the last one's `seq`."""
    stmt = select(proposals).order_by(proposals.c.seq.desc()).limit(limit + 1)
    if state is not None:
        stmt = stmt.where(proposals.c.state == state.value)
    if cursor is not None:
        stmt = stmt.where(proposals.c.seq < int(cursor))
    rows = (await conn.execute(stmt)).all()
    more, rows = len(rows) > limit, rows[:limit]
    return [view(r) for r in rows], str(rows[-1].seq) if more and rows else None


async def recent(conn: AsyncConnection, state: ProposalState, limit: int) -> list[ProposalView]:
    """The latest proposals in `state`, newest first (rejections feed the next cycle)."""
    rows = await conn.execute(
        select(proposals)
        .where(proposals.c.state == state.value)
        .order_by(proposals.c.seq.desc())
        .limit(limit)
    )
    return [view(r) for r in rows]


def view(row: Row[Any]) -> ProposalView:
    return ProposalView.model_validate(
        dict(row.draft)
        | {
            "id": row.id,
            "state": row.state,
            "repo": row.repo,
            "cycle": row.cycle,
            "created_at": row.created_at,
            "decided_at": row.decided_at,
            "decided_by": row.decided_by,
            "reason": row.reason,
            "goal_id": row.goal_id,
        }
    )
