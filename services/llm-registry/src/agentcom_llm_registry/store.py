"""Every SQL statement on llm.endpoints and llm.calls (the ledger's inserts live in ledger.py)."""

from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, func, select, update
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
