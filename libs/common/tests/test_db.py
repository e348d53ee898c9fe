"""`db.create_engine` against the real embedded Postgres: a connection Postgres ended is never
handed out (the checkout ping, or asyncpg having seen it close), a connection back in the pool
for less than `ping_idle` is handed out without a ping, and a live one is reused with its
transactions intact."""

from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import db
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import eventually


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


async def two_sessions(engine: AsyncEngine) -> list[int]:
    """The backend pids of two connections checked out together (both go back to the pool)."""
    async with engine.connect() as first, engine.connect() as second:
        return [
            int((await c.execute(text("SELECT pg_backend_pid()"))).scalar_one())
            for c in (first, second)
        ]


async def test_a_connection_postgres_ended_is_replaced_at_checkout(
    settings: CommonSettings, db_url: str
) -> None:
    """As after a Postgres restart: the pooled connections' sessions are gone. The next
    checkouts work at once (no error reaches the caller) on new sessions. (`ping_idle=0`:
    every checkout is pinged, as one after a restart is, whose connections idled past it.)"""
    engine = db.create_engine(settings, ping_idle=0)
    try:
        pids = await two_sessions(engine)  # two in the pool
        await terminate(db_url, *pids)

        assert not set(await two_sessions(engine)) & set(pids)
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


async def test_a_connection_asyncpg_saw_closed_is_replaced_inside_the_window(
    settings: CommonSettings, db_url: str
) -> None:
    """Back in the pool a moment ago, but its session ended since and asyncpg has read the
    socket close: pinged, found dead, replaced."""
    engine = db.create_engine(settings, ping_idle=3600)
    try:
        drivers: list[Any] = []
        async with engine.connect() as first, engine.connect() as second:
            for conn in (first, second):
                drivers.append((await conn.get_raw_connection()).driver_connection)
            pids = [int(d.get_server_pid()) for d in drivers]
        await terminate(db_url, *pids)

        async def seen_closed() -> None:
            assert all(d.is_closed() for d in drivers)

        await eventually(seen_closed)
        assert not set(await two_sessions(engine)) & set(pids)
    finally:
        await engine.dispose()


async def pinged(engine: AsyncEngine) -> list[str]:
    """The statements the pooled connection got across a second checkout of it (asyncpg's
    query logger sees the ping and the transaction, not the adapter's prepared statements)."""
    queries: list[str] = []
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None

        def logged(record: Any) -> None:
            queries.append(str(record.query))

        driver.add_query_logger(logged)
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 2"))
    return queries


async def test_a_connection_back_a_moment_ago_is_not_pinged_and_one_idle_longer_is(
    settings: CommonSettings,
) -> None:
    for window, ping in ((3600, False), (0, True)):
        engine = db.create_engine(settings, ping_idle=window)
        try:
            queries = await pinged(engine)
        finally:
            await engine.dispose()
        assert "BEGIN;" in queries  # the logger saw the second checkout's transaction
        assert ("SELECT 1" in queries) is ping, (window, queries)
