"""Postgres: the async engine and the checks around it.

One engine per process, built in the lifespan and passed down. Each service owns one schema.
"""

import asyncio
import logging
import time
from typing import Any

import asyncpg.exceptions as pg
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import AdaptedConnection
from sqlalchemy.exc import (
    DBAPIError,
    InterfaceError,
    InvalidatePoolError,
    OperationalError,
    TimeoutError as PoolTimeout,
)
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from agentcom_common.errors import UnavailableError
from agentcom_common.settings import CommonSettings

log = logging.getLogger(__name__)


def async_url(url: str) -> str:
    """`postgresql://…` as SQLAlchemy's asyncpg URL; other drivers in the URL are replaced."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("postgres"):
        raise ValueError(f"database URL must be postgresql://…, got scheme {parsed.drivername!r}")
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


PING_IDLE = 0.5
"""Seconds a pooled connection may have been idle and still be handed out unpinged (HikariCP's
`aliveBypassWindowMs`, 500 ms by default, is the same rule)."""


def create_engine(
    settings: CommonSettings, *, pool_size: int = 5, ping_idle: float = PING_IDLE
) -> AsyncEngine:
    """The process's engine. A checkout pings its connection first (`_ping`) unless it was
    back in the pool for less than `ping_idle` seconds and asyncpg has not seen it closed."""
    if settings.database_url is None:
        raise UnavailableError(
            "AGENTCOM_DATABASE_URL is not set; run the stack with `agentcom up` or set the variable",
            code="db_unavailable",
        )
    engine = create_async_engine(
        async_url(settings.database_url.get_secret_value()), pool_size=pool_size
    )
    # a Postgres restart must not hand out dead connections: a checkout is pinged first.
    # Not `pool_pre_ping`: the asyncpg adapter's ping opens a transaction, sends `;` and rolls
    # back, three round trips per checkout (nearly half the scheduler bench's statements,
    # `bench/README.md`); this is the same check in one, and none for a connection that was
    # in use a moment ago (most checkouts of a busy service)
    event.listen(engine.sync_engine.pool, "connect", _fresh)
    event.listen(engine.sync_engine.pool, "checkin", _returned)

    def checkout(dbapi: AdaptedConnection, record: ConnectionPoolEntry, proxy: Any) -> None:
        _ping(dbapi, record, proxy, ping_idle)

    event.listen(engine.sync_engine.pool, "checkout", checkout)
    return engine


_FRESH = "agentcom.fresh"
_RETURNED = "agentcom.returned"


def _fresh(_dbapi: Any, record: ConnectionPoolEntry) -> None:
    record.info[_FRESH] = True  # just connected: its first checkout needs no ping


def _returned(_dbapi: Any, record: ConnectionPoolEntry) -> None:
    record.info[_RETURNED] = time.monotonic()


def _ping(
    dbapi: AdaptedConnection, record: ConnectionPoolEntry, _proxy: Any, ping_idle: float
) -> None:
    """What `pool_pre_ping` does, in one round trip: `SELECT 1` by the simple query protocol
    (no statement prepared, no transaction). A connection that fails it in any way is a sign
    Postgres restarted, so every pooled connection made before now is replaced (as the
    pre-ping does); the pool then connects anew, and raises if Postgres is still away.

    Skipped for a connection returned less than `ping_idle` seconds ago that asyncpg still
    holds open: a session ended since then (a restart, `pg_terminate_backend`) closes its
    socket, which asyncpg sees as soon as the loop reads it; a checkout in the moment before
    that gets an error from its first statement, which the caller answers as Postgres away
    (503, a report redelivered), and that connection is then replaced."""
    if record.info.pop(_FRESH, False):
        return
    returned = record.info.get(_RETURNED)
    if (
        returned is not None
        and time.monotonic() - returned < ping_idle
        and not dbapi.driver_connection.is_closed()
    ):
        return
    try:
        dbapi.run_async(lambda conn: conn.execute("SELECT 1"))
    except Exception as exc:  # any failure: e.g. asyncpg's InternalClientError
        # when the server's "terminating connection" came while idle; nothing a pooled
        # session could recover from, and the caller must get a working one
        raise InvalidatePoolError(f"pooled connection is dead: {type(exc).__name__}") from exc


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


# what a Postgres restart, crash or failover looks like from here: refused connects, sessions the
# server terminated, "the database system is starting up", no free connection in time
_AWAY: tuple[type[BaseException], ...] = (
    ConnectionError,
    PoolTimeout,
    pg.PostgresConnectionError,  # includes ConnectionDoesNotExistError
    pg.AdminShutdownError,
    pg.CrashShutdownError,
    pg.CannotConnectNowError,
)


FAILURES: tuple[type[Exception], ...] = (
    OSError,  # only when the driver raised it (`unavailable`); any other is still a 500
    DBAPIError,
    PoolTimeout,
    ConnectionError,
    pg.PostgresError,
    pg.InterfaceError,
)
"""What a database call may raise: the HTTP edge answers each (503 when `unavailable`)."""


def unavailable(exc: BaseException) -> UnavailableError | None:
    """The 503 to answer when `exc` (or what caused it) means Postgres is away, else None.

    Callers retry a 503 (`Retry-After`); a 500 would say the request itself was at fault.
    """
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        invalidated = isinstance(cause, DBAPIError) and cause.connection_invalidated
        if invalidated or isinstance(cause, _AWAY) or _driver_os_error(cause):
            return UnavailableError(
                f"Postgres is not reachable ({type(cause).__name__}); retry shortly",
                code="db_unavailable",
            )
        if isinstance(cause, pg.InterfaceError) and "connection" in str(cause):
            return UnavailableError(
                "Postgres connection lost (InterfaceError); retry shortly", code="db_unavailable"
            )
        cause = cause.__cause__ or cause.__context__
    return None


def _driver_os_error(exc: BaseException) -> bool:
    """An OSError raised inside asyncpg: a server stopped cleanly removes its unix socket, so a
    connect fails with FileNotFoundError (ENOENT), which is neither a ConnectionError nor
    wrapped by SQLAlchemy. An OSError from anywhere else is not about Postgres."""
    if not isinstance(exc, OSError):
        return False
    frame = exc.__traceback__
    while frame is not None:
        if frame.tb_frame.f_globals.get("__name__", "").startswith("asyncpg"):
            return True
        frame = frame.tb_next
    return False
