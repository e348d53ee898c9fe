"""`leader.Leadership` against the real embedded Postgres: one leader, never two, and a
takeover when the leader's session ends."""

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import leader
from agentcom_common.testing import PgServer, eventually

INTERVAL = timedelta(milliseconds=200)  # lease 0.6 s: checks survive a loaded CI machine
LEASE_S = leader.LEASES_PER_INTERVAL * INTERVAL.total_seconds()


class Watch:
    """Samples who leads every few milliseconds; records any moment with two leaders."""

    def __init__(self, *contenders: leader.Leadership) -> None:
        self.contenders = contenders
        self.both = 0

    async def run(self) -> None:
        while True:
            if sum(c.is_leader for c in self.contenders) > 1:
                self.both += 1
            await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def watched(*contenders: leader.Leadership) -> AsyncGenerator[Watch]:
    watch = Watch(*contenders)
    task = asyncio.create_task(watch.run())
    try:
        yield watch
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert watch.both == 0, "two contenders believed they led at once"


class Freezer:
    """A TCP proxy in front of Postgres that can stop passing bytes on the connections it has:
    a network cut as the client sees it (no reset, no FIN: its queries just hang)."""

    def __init__(self, pg: PgServer) -> None:
        self.pg = pg
        self.flows: list[asyncio.Event] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.serving: set[asyncio.Task[Any]] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    def freeze(self) -> None:
        for flow in self.flows:
            flow.clear()

    async def close(self) -> None:
        """Stop listening and drop every connection, frozen or not (nothing may outlive the
        test: a pending pipe or an open socket would fail a later one's warning check)."""
        if self.server is not None:
            self.server.close()
        for task in self.serving:
            task.cancel()
        await asyncio.gather(*self.serving, return_exceptions=True)
        for writer in self.writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if self.server is not None:
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.serving.add(task)
        self.writers.append(writer)
        if self.pg.host.startswith("/"):
            up = await asyncio.open_unix_connection(f"{self.pg.host}/.s.PGSQL.{self.pg.port}")
        else:
            up = await asyncio.open_connection(self.pg.host, self.pg.port)
        self.writers.append(up[1])
        flow = asyncio.Event()
        flow.set()
        self.flows.append(flow)
        await asyncio.gather(self._pipe(reader, up[1], flow), self._pipe(up[0], writer, flow))

    @staticmethod
    async def _pipe(
        src: asyncio.StreamReader, dst: asyncio.StreamWriter, flow: asyncio.Event
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await src.read(65536):
                await flow.wait()  # frozen: held for ever, as a cut cable would
                dst.write(data)
                await dst.drain()
            await flow.wait()  # a close is not passed on while frozen either
            dst.close()


def contender(db_url: str, name: str = "hubfsm") -> leader.Leadership:
    return leader.Leadership(db_url, name=name, interval=INTERVAL)


async def holder_pid(db_url: str, lead: leader.Leadership) -> int:
    """The backend pid that holds `lead`'s lock (a bigint key shows as classid/objid)."""
    connect: Any = asyncpg.connect  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # asyncpg: no stubs
    conn = await connect(db_url)
    try:
        key = lead.key & 0xFFFFFFFFFFFFFFFF
        pid: int | None = await conn.fetchval(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 1",
            key >> 32,
            key & 0xFFFFFFFF,
        )
        assert pid is not None, "nobody holds the lock"
        return pid
    finally:
        await conn.close()


async def first_leader(*contenders: leader.Leadership) -> leader.Leadership:
    async def lead_of(c: leader.Leadership) -> leader.Leadership:
        await c.acquired()
        return c

    waits = [asyncio.ensure_future(lead_of(c)) for c in contenders]
    done, pending = await asyncio.wait(waits, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    for wait in pending:
        wait.cancel()
    assert done, "no contender became leader"
    return done.pop().result()


async def test_of_two_contenders_exactly_one_leads(db_url: str) -> None:
    async with contender(db_url) as a, contender(db_url) as b, watched(a, b):
        winner = await first_leader(a, b)
        other = b if winner is a else a

        with pytest.raises(TimeoutError):  # five leases: the loser never takes it
            await asyncio.wait_for(other.acquired(), timeout=5 * LEASE_S)
        assert winner.is_leader


async def test_other_names_lead_independently(db_url: str, engine: AsyncEngine) -> None:
    by_engine = leader.Leadership(engine, name="sweeper", interval=INTERVAL)
    async with contender(db_url, "hubfsm") as a, by_engine as b:
        await asyncio.wait_for(asyncio.gather(a.acquired(), b.acquired()), timeout=10)


async def test_when_the_leaders_session_is_killed_the_other_takes_over(
    db_url: str,
) -> None:
    async with contender(db_url) as a, contender(db_url) as b, watched(a, b):
        winner = await first_leader(a, b)
        other = b if winner is a else a
        connect: Any = asyncpg.connect  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # asyncpg: no stubs
        admin = await connect(db_url)
        try:
            assert await admin.fetchval(
                "SELECT pg_terminate_backend($1)", await holder_pid(db_url, winner)
            )
        finally:
            await admin.close()

        await asyncio.wait_for(other.acquired(), timeout=10)

        assert not winner.is_leader  # it noticed its session was gone
        assert other.is_leader


async def test_a_leader_that_leaves_hands_over(db_url: str) -> None:
    async with contextlib.AsyncExitStack() as first_stack:
        first = await first_stack.enter_async_context(contender(db_url))
        await asyncio.wait_for(first.acquired(), timeout=10)
        async with contender(db_url) as second, watched(first, second):
            assert not second.is_leader

            await first_stack.aclose()

            assert not first.is_leader
            await asyncio.wait_for(second.acquired(), timeout=10)


async def test_leader_work_is_cancelled_when_its_session_dies_and_resumed_after(
    db_url: str,
) -> None:
    runs: list[str] = []

    async def work() -> None:
        runs.append("started")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            runs.append("cancelled")
            raise

    async with contender(db_url) as lead:
        holding = asyncio.create_task(lead.hold(work))
        await asyncio.wait_for(lead.acquired(), timeout=10)

        async def started() -> None:
            assert runs == ["started"]

        await eventually(started)
        connect: Any = asyncpg.connect  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # asyncpg: no stubs
        admin = await connect(db_url)
        try:
            await admin.fetchval("SELECT pg_terminate_backend($1)", await holder_pid(db_url, lead))
        finally:
            await admin.close()

        async def cancelled_then_resumed() -> None:  # alone, it leads again on a new session
            assert runs == ["started", "cancelled", "started"]

        await eventually(cancelled_then_resumed)
        holding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await holding


async def test_a_leader_cut_off_steps_down_before_the_next_one_acts(
    db_url: str, pg_server: PgServer
) -> None:
    """The cut-off leader only times out (its session was ended behind the cut); the next one
    got the lock at once, and acts only after the lease the old one could still believe in."""
    freezer = Freezer(pg_server)
    port = await freezer.start()
    through = make_url(db_url).set(drivername="postgresql", host="127.0.0.1", port=port, query={})
    cut_off = contender(through.render_as_string(hide_password=False))
    try:
        async with cut_off:
            await asyncio.wait_for(cut_off.acquired(), timeout=10)
            async with contender(db_url) as next_one, watched(cut_off, next_one):
                pid = await holder_pid(db_url, cut_off)
                freezer.freeze()
                connect: Any = asyncpg.connect  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # asyncpg: no stubs
                admin = await connect(db_url)
                try:
                    assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
                finally:
                    await admin.close()

                await asyncio.wait_for(next_one.acquired(), timeout=10)

                assert not cut_off.is_leader
    finally:
        await freezer.close()


async def test_cancelling_hold_cancels_the_work_it_runs(db_url: str) -> None:
    """A service stopping cancels the task in `hold`; the work must stop with it, or it acts
    as the leader after its process has let go (a stopped hub's brain did, in CI)."""
    runs: list[str] = []

    async def work() -> None:
        runs.append("started")
        try:
            await asyncio.Event().wait()
        finally:
            runs.append("ended")

    async with contender(db_url) as lead:
        holding = asyncio.create_task(lead.hold(work))

        async def started() -> None:
            assert runs == ["started"]

        await eventually(started)
        holding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await holding
        assert runs == ["started", "ended"]
