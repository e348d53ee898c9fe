"""Every SQL statement on the webhook tables: deliveries, pull requests, rounds, CI failures."""

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from agentcom_common.contracts.github import DeliveryOutcome, DeliveryView
from agentcom_hubfsm.tables import ci_failures, pr_rounds, pull_requests, webhook_deliveries


@dataclass(slots=True)
class Delivery:
    """What the route knows of one delivery; recorded once, whatever its outcome."""

    delivery: str | None
    event: str | None
    action: str | None = None
    repo: str | None = None
    done: list[str] = field(default_factory=list[str])


async def claim(conn: AsyncConnection, d: Delivery) -> int | None:
    """Record `d` as the accepted delivery of its id; None when one was accepted before (a
    replay). The unique index decides, so two replicas given the same delivery act once."""
    stmt = (
        pg_insert(webhook_deliveries)
        .values(
            delivery=d.delivery,
            event=d.event,
            action=d.action,
            repo=d.repo,
            accepted=True,
            status=202,
            outcome="acted",
            reason="being handled",
        )
        .on_conflict_do_nothing(
            index_elements=["delivery"], index_where=webhook_deliveries.c.accepted
        )
        .returning(webhook_deliveries.c.id)
    )
    return (await conn.execute(stmt)).scalar_one_or_none()


async def finish(
    conn: AsyncConnection,
    row_id: int,
    d: Delivery,
    status: int,
    outcome: DeliveryOutcome,
    reason: str,
) -> None:
    await conn.execute(
        update(webhook_deliveries)
        .where(webhook_deliveries.c.id == row_id)
        .values(status=status, outcome=outcome, reason=reason[:2000], done=d.done)
    )


async def refuse(conn: AsyncConnection, d: Delivery, status: int, reason: str) -> None:
    """Record a refused delivery (never `accepted`: a refusal does not use up its id)."""
    await conn.execute(
        insert(webhook_deliveries).values(
            delivery=(d.delivery or "")[:200] or None,
            event=(d.event or "")[:100] or None,
            action=d.action,
            repo=d.repo,
            accepted=False,
            status=status,
            outcome="refused",
            reason=reason[:2000],
        )
    )


async def page(
    conn: AsyncConnection, *, cursor: int | None, limit: int, repo: str | None
) -> tuple[list[DeliveryView], str | None]:
    """Newest first; `next_cursor` is the last one's id."""
    stmt = select(webhook_deliveries).order_by(webhook_deliveries.c.id.desc()).limit(limit + 1)
    if cursor is not None:
        stmt = stmt.where(webhook_deliveries.c.id < cursor)
    if repo is not None:
        stmt = stmt.where(webhook_deliveries.c.repo == repo)
    rows = (await conn.execute(stmt)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    views = [
        DeliveryView(
            id=r.id,
            delivery=r.delivery,
            event=r.event,
            action=r.action,
            repo=r.repo,
            status=r.status,
            outcome=r.outcome,
            reason=r.reason,
            done=r.done,
            received_at=r.received_at,
        )
        for r in rows
    ]
    return views, str(rows[-1].id) if more and rows else None


async def track_pull(conn: AsyncConnection, values: dict[str, Any]) -> Row[Any]:
    """The pull request's row, made on first sight; locked for the caller's transaction (a
    round counts under this lock, so two deliveries never take the same round number)."""
    await conn.execute(pg_insert(pull_requests).values(values).on_conflict_do_nothing())
    return (
        await conn.execute(
            select(pull_requests)
            .where(pull_requests.c.repo == values["repo"])
            .where(pull_requests.c.number == values["number"])
            .with_for_update()
        )
    ).one()


async def set_pull_state(conn: AsyncConnection, repo: str, number: int, state: str) -> bool:
    done = await conn.execute(
        update(pull_requests)
        .where(pull_requests.c.repo == repo, pull_requests.c.number == number)
        .where(pull_requests.c.state != state)
        .values(state=state, updated_at=func.now())
    )
    return bool(done.rowcount)


async def open_pulls(conn: AsyncConnection, repo: str, base: str) -> list[Row[Any]]:
    return list(
        (
            await conn.execute(
                select(pull_requests)
                .where(pull_requests.c.repo == repo)
                .where(pull_requests.c.base == base)
                .where(pull_requests.c.state == "open")
            )
        ).all()
    )


async def has_round(conn: AsyncConnection, repo: str, number: int, kind: str, cause: str) -> bool:
    found = await conn.execute(
        select(pr_rounds.c.id)
        .where(pr_rounds.c.repo == repo, pr_rounds.c.number == number)
        .where(pr_rounds.c.kind == kind, pr_rounds.c.cause == cause)
    )
    return found.first() is not None


async def add_round(conn: AsyncConnection, values: dict[str, Any]) -> None:
    """Record the round and count it on its pull request (the caller holds the PR's lock)."""
    await conn.execute(insert(pr_rounds).values(values))
    await conn.execute(
        update(pull_requests)
        .where(pull_requests.c.repo == values["repo"])
        .where(pull_requests.c.number == values["number"])
        .values(rounds=values["round"], updated_at=func.now())
    )


async def add_ci_failure(conn: AsyncConnection, values: dict[str, Any]) -> bool:
    """Record a default branch's failed check; False when this check of this commit was."""
    made = await conn.execute(
        pg_insert(ci_failures).values(values).on_conflict_do_nothing().returning(ci_failures.c.id)
    )
    return made.scalar_one_or_none() is not None


async def release(conn: AsyncConnection, row_id: int) -> None:
    """Let a redelivery of this id be accepted (acting on it failed)."""
    await conn.execute(
        update(webhook_deliveries).where(webhook_deliveries.c.id == row_id).values(accepted=False)
    )
