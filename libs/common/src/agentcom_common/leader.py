"""One leader among replicas: a Postgres session advisory lock on a connection held open.

    async with leader.Leadership(res.engine, name="hubfsm") as lead:
        await lead.hold(run_the_fsm)  # runs it while leading, cancels it the moment it is not

Every replica contends: every `interval` it tries `pg_try_advisory_lock(key)` on its own
asyncpg connection (not the engine's pool: the lock belongs to the session, so the connection
must stay checked out; a transaction-pooling proxy in between would break it). The one that
gets it checks every `interval` that its connection still answers (`SELECT 1`, given what
is left of its lease) and steps down as soon as a check fails or times out: `is_leader` turns
False, `lost()` returns, `hold()` cancels the work. Postgres releases the lock only when that
session ends, so holding the session is holding the lock.

Two leaders never act at once, given event loops that are not frozen: a holder believes it
leads only until `lease` (3 intervals) after the start of its last check that succeeded, and a
new holder starts to act only a `lease` after it got the lock. The old session ended before
the new one got the lock, and after the old holder's last good check began, so the old holder
had stopped by then. The price is the grace: a new leader (the first one too) acts a lease
after it got the lock. A process frozen mid-term (SIGSTOP, a debugger) cannot notice; writes
that must never overlap need a fence of their own (a generation in the row).

What a kill -9 does at each point:
- a contender: nothing; it held nothing, and its session ends with its socket.
- the leader, or one in its grace: the kernel closes its socket, Postgres ends the session and
  frees the lock at once; a contender takes it at its next try (≤ `interval`) and acts a
  `lease` later: about 4 intervals (4 s by default) without a leader, never two.
- the leader's host (power, network cut): no FIN reaches Postgres; the session lingers until
  TCP keepalive gives up. The session asks for keepalives after `lease` idle, every
  `interval`, 3 probes (over TCP; a Unix socket needs none), so takeover takes a few leases.
  The cut-off leader's checks time out meanwhile and it steps down within a lease.
- Postgres: every session ends; the leader's next check fails and it steps down; all contend
  again once Postgres is back.
"""

import asyncio
import contextlib
import hashlib
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import timedelta
from types import TracebackType
from typing import Any, Self

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import cancelling

log = logging.getLogger(__name__)

LEASES_PER_INTERVAL = 3
"""A lease lasts 3 intervals: a check starts every interval and takes at most one, so a healthy
leader renews well before its lease ends, even when checks are slow."""


def lock_key(name: str) -> int:
    """The advisory lock's 64-bit key for `name`: the same in every process and version."""
    digest = hashlib.blake2b(f"agentcom.leader.{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _dsn(database: str | AsyncEngine) -> str:
    if isinstance(database, AsyncEngine):
        url = database.url.set(drivername="postgresql")
    else:
        url = make_url(database).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class Leadership:
    """Contend for leadership of `name` while inside `async with`; see the module docstring."""

    def __init__(
        self,
        database: str | AsyncEngine,
        *,
        name: str,
        interval: timedelta = timedelta(seconds=1),
    ) -> None:
        if interval <= timedelta(0):
            raise ValueError(f"interval must be positive, got {interval}")
        self.name = name
        self.key = lock_key(name)
        self.interval = interval.total_seconds()
        self.lease = LEASES_PER_INTERVAL * self.interval
        self._dsn = _dsn(database)
        self._leading = asyncio.Event()
        self._following = asyncio.Event()
        self._following.set()
        self._task: asyncio.Task[None] | None = None

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    async def acquired(self) -> None:
        """Return once this process leads (at once if it does)."""
        await self._leading.wait()

    async def lost(self) -> None:
        """Return once this process does not lead (at once if it does not)."""
        await self._following.wait()

    async def hold(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run `work()` whenever this process leads, cancelled the moment it stops leading.

        Returns when `work` returns; an exception from it propagates. Never returns while
        this process only follows.
        """
        while True:
            await self.acquired()
            running = asyncio.ensure_future(work())
            stepped_down = asyncio.ensure_future(self.lost())
            try:
                await asyncio.wait({running, stepped_down}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stepped_down.cancel()
                ended = running.done()
                if not ended:
                    # also when `hold` itself is cancelled (its service stopping): `wait`
                    # leaves what it waits on running, and a work left behind went on acting
                    # as the leader after its process had let go (CI saw a stopped hub's
                    # brain step against a dropped database 80 times a second)
                    await cancelling.cancel_and_wait([running])
            if ended:
                running.result()  # raises what the work raised
                return
            log.warning("leader.work_cancelled", extra={"leader": self.name})

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._contend_forever(), name=f"leader-{self.name}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._step_down("leaving")  # before the lock is freed: nobody else may lead before
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _lead(self) -> None:
        self._following.clear()
        self._leading.set()
        log.info("leader.acquired", extra={"leader": self.name})

    def _step_down(self, why: str) -> None:
        if self._leading.is_set():
            log.warning("leader.lost", extra={"leader": self.name, "reason": why})
        self._leading.clear()
        self._following.set()

    async def _contend_forever(self) -> None:
        while True:
            conn: Any = None
            try:
                conn = await self._connect()
                await self._contend(conn)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self._step_down(type(exc).__name__)
                log.info("leader.connection_failed", extra={"leader": self.name})
            except Exception:  # the loop must outlive any surprise, or nobody would lead
                log.exception("leader.failed", extra={"leader": self.name})
            finally:
                self._step_down("connection closed")
                if conn is not None:
                    conn.terminate()  # no goodbye round trip to a server that may be gone
            await asyncio.sleep(self.interval)  # the pace of retries while Postgres is away

    async def _connect(self) -> Any:
        connect: Any = asyncpg.connect  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # asyncpg: no stubs
        every = str(max(1, math.ceil(self.interval)))
        return await connect(
            self._dsn,
            timeout=self.lease,
            server_settings={
                "application_name": f"agentcom-leader-{self.name}",
                "tcp_keepalives_idle": str(max(1, math.ceil(self.lease))),
                "tcp_keepalives_interval": every,
                "tcp_keepalives_count": "3",
            },
        )

    async def _contend(self, conn: Any) -> None:
        """Try for the lock each interval; once held, check the session each interval and
        lead from a lease after the lock was got until a check fails (raises)."""
        loop = asyncio.get_running_loop()
        # polled, not a blocking pg_advisory_lock: a contender's session stays free to
        # notice a dead server, and the interval is the one knob of the whole scheme
        while True:
            if await conn.fetchval(
                "SELECT pg_try_advisory_lock($1)", self.key, timeout=self.interval
            ):
                break
            await asyncio.sleep(self.interval)
        got_at = loop.time()
        log.info("leader.locked", extra={"leader": self.name, "grace_s": self.lease})
        good = got_at  # when the last check that succeeded started
        while True:
            started = loop.time()
            # a check may take what is left of the lease: a slow answer on a busy machine
            # still renews it, and one that has not come by the lease's end steps down (raises)
            # just as the lease says it must; one interval only, as before, gave the lead away
            # on every slow answer (CI's loaded cores flapped leaders at 200 ms intervals)
            left = good + self.lease - started
            if left <= 0:  # never, given the overrun check below; kept so a change cannot
                self._step_down("lease overrun")  # turn a spent lease into a long check
                return
            await conn.fetchval("SELECT 1", timeout=left)
            good = started
            if not self.is_leader and loop.time() >= got_at + self.lease:
                self._lead()
            # the next check starts an interval from now, or when the grace ends if sooner
            wait = self.interval
            if not self.is_leader:
                wait = min(wait, max(0.0, got_at + self.lease - loop.time()))
            await asyncio.sleep(wait)
            if loop.time() > started + self.lease:  # the loop was stalled past the lease
                self._step_down("lease overrun")
                return
