"""`db.create_engine` against the real embedded Postgres: a connection Postgres ended is never
handed out (the checkout ping), and a live one is reused with its transactions intact."""

from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import db
from agentcom_common.settings import CommonSettings


async def backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def terminate(db_url: str, *pids: int) -> None:
    connect: Any = asyncpg.connect  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # asyncpg: no stubs
    admin = await connect(db_url)
    try:
        for pid in pids:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()


async def test_a_connection_postgres_ended_is_replaced_at_checkout(
    settings: CommonSettings, db_url: str
) -> None:
    """As after a Postgres restart: the pooled connections' sessions are gone. The next
    checkouts work at once (no error reaches the caller) on new sessions."""
    engine = db.create_engine(settings)
    try:
        async with engine.connect() as first, engine.connect() as second:  # two in the pool
            pids = [
                int((await c.execute(text("SELECT pg_backend_pid()"))).scalar_one())
                for c in (first, second)
            ]
        await terminate(db_url, *pids)

        async with engine.connect() as again, engine.connect() as other:
            now = [
                int((await c.execute(text("SELECT pg_backend_pid()"))).scalar_one())
                for c in (again, other)
            ]
        assert not set(now) & set(pids)
    finally:
        await engine.dispose()


async def test_a_live_connection_is_reused_after_its_ping(settings: CommonSettings) -> None:
    """The ping does not cost the connection: a checkout reuses the pooled session, and a
    transaction on it commits as before (the ping left none open)."""
    engine = db.create_engine(settings)
    try:
        first = await backend_pid(engine)
        async with engine.begin() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
            pid = int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())
        assert pid == first
        assert await backend_pid(engine) == first
    finally:
        await engine.dispose()
