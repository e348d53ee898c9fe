"""Every SQL statement on llm.endpoints and llm.calls (the ledger's inserts live in ledger.py)."""

from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from agentcom_llm_registry.tables import calls, endpoints


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
