"""Every SQL statement on llm.endpoints, llm.calls, llm.budgets and llm.tier_fallbacks (the ledger's inserts live in
ledger.py)."""

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from agentcom_llm_registry.tables import budgets, calls, endpoints, tier_fallbacks


async def all_endpoints(conn: AsyncConnection) -> list[Row[Any]]:
    return list((await conn.execute(select(endpoints).order_by(endpoints.c.created_at))).all())


async def upsert_endpoint(conn: AsyncConnection, values: dict[str, Any]) -> bool:
    """Insert or update; True when the row is new."""
    stmt = insert(endpoints).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[endpoints.c.id],
        set_={k: stmt.excluded[k] for k in values if k != "id"},
    ).returning(endpoints.c.created_at, (func.now() == endpoints.c.created_at).label("fresh"))
    row = (await conn.execute(stmt)).one()
    return bool(row.fresh)


async def learn_endpoint(conn: AsyncConnection, values: dict[str, Any]) -> tuple[bool, bool] | None:
    """Insert or refresh an endpoint learnt from agent `values["owner"]`; (new, shared), or None
    when the id is an endpoint added by hand or learnt from another agent (left as it is).

    Sharing holds for the URL an admin shared: a heartbeat naming another URL unshares it."""
    stmt = insert(endpoints).values(**values, shared=False)
    stmt = stmt.on_conflict_do_update(
        index_elements=[endpoints.c.id],
        set_={k: stmt.excluded[k] for k in values if k not in ("id", "owner")}
        | {"shared": endpoints.c.shared & (endpoints.c.base_url == stmt.excluded.base_url)},
        where=endpoints.c.owner == stmt.excluded.owner,
    ).returning((func.now() == endpoints.c.created_at).label("fresh"), endpoints.c.shared)
    row = (await conn.execute(stmt)).one_or_none()
    return None if row is None else (bool(row.fresh), bool(row.shared))


async def share_endpoint(conn: AsyncConnection, endpoint_id: str) -> Row[Any] | None:
    """Share a learnt endpoint with every caller; None when there is no such learnt endpoint."""
    stmt = (
        update(endpoints)
        .where(endpoints.c.id == endpoint_id, endpoints.c.owner.is_not(None))
        .values(shared=True)
        .returning(*endpoints.c)
    )
    return (await conn.execute(stmt)).one_or_none()


async def insert_endpoint(conn: AsyncConnection, values: dict[str, Any]) -> bool:
    """Insert; False when the id is taken."""
    stmt = insert(endpoints).values(**values).on_conflict_do_nothing().returning(endpoints.c.id)
    return (await conn.execute(stmt)).one_or_none() is not None


async def delete_endpoint(conn: AsyncConnection, endpoint_id: str) -> bool:
    stmt = delete(endpoints).where(endpoints.c.id == endpoint_id).returning(endpoints.c.id)
    return (await conn.execute(stmt)).one_or_none() is not None


async def cost_summary(conn: AsyncConnection, since: datetime, group_by: str) -> list[Row[Any]]:
    key = calls.c[group_by]
    stmt = (
        select(
            key.label("key"),
            func.count().label("calls"),
            func.count().filter(calls.c.ok.is_(False)).label("failed"),
            func.coalesce(func.sum(calls.c.tokens_in), 0).label("tokens_in"),
            func.coalesce(func.sum(calls.c.tokens_out), 0).label("tokens_out"),
            func.coalesce(func.sum(calls.c.duration_ms), 0.0).label("duration_ms"),
            func.coalesce(func.sum(calls.c.cost_usd), 0.0).label("cost_usd"),
        )
        .where(calls.c.at >= since)
        .group_by(key)
        .order_by(key)
    )
    rows: list[Any] = list((await conn.execute(stmt)).all())
    return rows


# One statement reserves a call's estimate on every budget it pays into. A budget's row is
# inserted (a new one only if the call alone fits) or updated only where the reservation fits
# under its limit; a window that closed starts again at 0. ON CONFLICT DO UPDATE locks the row
# and evaluates the WHERE on its newest version, so a concurrent call waits for this one and
# then sees its reservation: N calls at once cannot all pass under the limit. The caller rolls
# the transaction back unless every budget came back (one over its limit refuses the call,
# and the others keep nothing). Rows are taken in scope order, by every reservation and
# settlement, so two calls sharing budgets never deadlock.
_RESERVE = text("""
INSERT INTO llm.budgets AS b (scope, window_start, tokens, usd, max_tokens, max_usd)
SELECT w.scope, :now, w.tokens, w.usd, w.max_tokens, w.max_usd
FROM unnest(
    CAST(:scopes AS text[]), CAST(:tokens AS bigint[]), CAST(:usd AS float8[]),
    CAST(:max_tokens AS bigint[]), CAST(:max_usd AS float8[])
) AS w(scope, tokens, usd, max_tokens, max_usd)
WHERE (w.max_tokens IS NULL OR w.tokens <= w.max_tokens)
  AND (w.max_usd IS NULL OR w.usd <= w.max_usd)
ORDER BY w.scope
ON CONFLICT (scope) DO UPDATE SET
    window_start = CASE WHEN b.window_start <= :closed THEN excluded.window_start
                        ELSE b.window_start END,
    tokens = CASE WHEN b.window_start <= :closed THEN 0 ELSE b.tokens END + excluded.tokens,
    usd = CASE WHEN b.window_start <= :closed THEN 0 ELSE b.usd END + excluded.usd,
    max_tokens = excluded.max_tokens,
    max_usd = excluded.max_usd
WHERE (excluded.max_tokens IS NULL OR excluded.tokens
        + CASE WHEN b.window_start <= :closed THEN 0 ELSE b.tokens END <= excluded.max_tokens)
  AND (excluded.max_usd IS NULL OR excluded.usd
        + CASE WHEN b.window_start <= :closed THEN 0 ELSE b.usd END <= excluded.max_usd)
RETURNING b.scope, b.window_start
""")

# A settlement moves the reservation to what the call used (negative: it used less), in the
# window it was reserved in; if that window closed meanwhile there is nothing left to correct.
_SETTLE = text("""
UPDATE llm.budgets SET tokens = greatest(0, tokens + :tokens), usd = greatest(0, usd + :usd)
WHERE scope = :scope AND window_start = :window_start
""")


async def reserve(
    conn: AsyncConnection, now: datetime, closed: datetime, rows: list[dict[str, Any]]
) -> dict[str, datetime]:
    """Reserve on the budgets of `rows` (scope, tokens, usd, max_tokens, max_usd, sorted by
    scope); the window start of each budget that took it (the caller checks all did)."""
    params: dict[str, Any] = {"now": now, "closed": closed} | {
        key: [r[key] for r in rows] for key in ("tokens", "usd", "max_tokens", "max_usd")
    }
    params["scopes"] = [r["scope"] for r in rows]
    result = await conn.execute(_RESERVE, params)
    return {row.scope: row.window_start for row in result}


async def settle(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Apply (scope, window_start, tokens, usd) corrections, in scope order."""
    await conn.execute(_SETTLE, sorted(rows, key=lambda r: r["scope"]))


async def fetch_budgets(conn: AsyncConnection, scopes: list[str] | None = None) -> list[Row[Any]]:
    stmt = select(budgets).order_by(budgets.c.scope)
    if scopes is not None:
        stmt = stmt.where(budgets.c.scope.in_(scopes))
    return list((await conn.execute(stmt)).all())


async def set_fallback(conn: AsyncConnection, tier: str, lasts: timedelta, reason: str) -> datetime:
    """Route `tier` to its fallback for `lasts` from now, by the database's clock; its end."""
    until = func.now() + lasts
    stmt = insert(tier_fallbacks).values(tier=tier, until=until, reason=reason)
    stmt = stmt.on_conflict_do_update(
        index_elements=[tier_fallbacks.c.tier],
        set_={"until": until, "reason": reason, "set_at": func.now()},
    ).returning(tier_fallbacks.c.until)
    return (await conn.execute(stmt)).scalar_one()


async def end_fallback(conn: AsyncConnection, tier: str) -> None:
    await conn.execute(delete(tier_fallbacks).where(tier_fallbacks.c.tier == tier))


async def active_fallbacks(conn: AsyncConnection) -> dict[str, tuple[datetime, float]]:
    """The fallbacks in force now (by the database's clock): tier -> (until, seconds left)."""
    left = func.extract("epoch", tier_fallbacks.c.until - func.now())
    rows = await conn.execute(
        select(tier_fallbacks.c.tier, tier_fallbacks.c.until, left.label("left")).where(
            tier_fallbacks.c.until > func.now()
        )
    )
    return {row.tier: (row.until, float(row.left)) for row in rows}
