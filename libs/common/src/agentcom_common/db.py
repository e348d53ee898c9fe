"""Postgres: the async engine and the checks around it.

One engine per process, built in the lifespan and passed down. Each service owns one schema.
"""

import asyncio
import logging

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agentcom_common.errors import UnavailableError
from agentcom_common.settings import CommonSettings

log = logging.getLogger(__name__)


def async_url(url: str) -> str:
    """`postgresql://…` as SQLAlchemy's asyncpg URL; other drivers in the URL are replaced."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("postgres"):
        raise ValueError(f"database URL must be postgresql://…, got scheme {parsed.drivername!r}")
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def create_engine(settings: CommonSettings, *, pool_size: int = 5) -> AsyncEngine:
    if settings.database_url is None:
        raise UnavailableError(
            "AGENTCOM_DATABASE_URL is not set; run the stack with `agentcom up` or set the variable",
            code="db_unavailable",
        )
    return create_async_engine(
        async_url(settings.database_url.get_secret_value()),
        pool_size=pool_size,
        pool_pre_ping=True,  # a Postgres restart must not hand out dead connections
    )


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def wait_until_reachable(engine: AsyncEngine, *, deadline: float, pause: float = 0.2) -> None:
    """Retry `SELECT 1` until it works or `deadline` seconds pass (compose starts us in any order)."""
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + deadline
    while True:
        try:
            await ping(engine)
        except (OSError, DBAPIError, InterfaceError, OperationalError) as exc:
            if loop.time() >= stop_at:
                raise UnavailableError(
                    f"cannot reach Postgres: {type(exc).__name__}; is it running? (`agentcom status`)",
                    code="db_unavailable",
                ) from exc
            await asyncio.sleep(pause)
        else:
            return
