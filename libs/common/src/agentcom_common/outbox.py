"""The transactional outbox: an event is a row written in the same transaction as the change.

Why: publishing to NATS inside a transaction can emit an event for a change that then rolls back;
publishing after commit loses the event if the process dies in between. Here the row commits or
rolls back with the change, and the `Relay` publishes committed rows afterwards with the row id
as `Nats-Msg-Id`, deleting each row in the same transaction that published it.

What a kill does at each point:
- before commit: no change, no row, no event.
- after commit, before the relay runs: the row waits; the next relay (this process restarted, or
  a replica) publishes it.
- after publish, before the delete commits: the row is published again by the next pass, and
  JetStream drops the copy by `Nats-Msg-Id` (inside `dedup_window`); consumers are idempotent
  for the rare copy outside it.
A `NOTIFY` in the same transaction wakes relays on commit only; the sweep covers a lost notify.

Hot paths may skip the `NOTIFY` and call `wake_local(table)` after their commit instead: it wakes
this process's relay directly. Postgres serialises the commits of notifying transactions on
one database-wide lock, so a NOTIFY per transaction defeats group commit under load; a replica
that was not woken still publishes the rows on its next sweep.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Sequence
from datetime import timedelta
from typing import Any

from nats.js import JetStreamContext
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Identity,
    LargeBinary,
    MetaData,
    Row,
    Table,
    Text,
    delete,
    func,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agentcom_common import messaging, telemetry
from agentcom_common.contracts import Contract

log = logging.getLogger(__name__)


def define_table(metadata: MetaData) -> Table:
    """The outbox table inside `metadata`'s schema (the migration is `migrations.create_outbox`)."""
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("subject", Text, nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("headers", JSON, nullable=False),
        Column("created_at", DateTime(timezone=True), server_default=func.now()),
    )


def channel(table: Table) -> str:
    return f"agentcom_outbox_{table.schema}"


async def add(conn: AsyncConnection, table: Table, subject: str, message: Contract) -> None:
    """Queue `message` for `subject`; it is published only if the caller's transaction commits.

    The current trace context is stored with it so the event continues the request's trace.
    """
    await conn.execute(
        table.insert().values(
            subject=subject,
            payload=message.model_dump_json().encode(),
            headers=telemetry.inject_headers(),
        )
    )
    # delivered by Postgres at commit, dropped on rollback: exactly the wake-up we want
    await conn.execute(text(f"NOTIFY {channel(table)}"))


def msg_id(table: Table, row_id: int) -> str:
    """Unique across services: each service's outbox lives in its own schema."""
    return f"{table.schema}.outbox.{row_id}"


async def claim_batch(
    conn: AsyncConnection, table: Table, limit: int
) -> Sequence[Row[Any, Any, Any, Any]]:
    """Oldest unpublished rows, locked; SKIP LOCKED lets replicas relay side by side."""
    stmt = (
        select(table.c.id, table.c.subject, table.c.payload, table.c.headers)
        .order_by(table.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (await conn.execute(stmt)).all()


PUBLISH_TIMEOUT = 10.0  # seconds for a whole batch's acks; the rows stay on a timeout


async def publish_rows(
    js: JetStreamContext, table: Table, rows: Sequence[Row[Any, Any, Any, Any]]
) -> None:
    """Publish in id order and await the acks together: one round trip per batch, not per row.

    `publish_async` writes each message at once and resolves its ack from one shared reply
    subscription. If any ack fails or is late, the caller's transaction rolls back and the
    whole batch is published again later (JetStream drops the copies by `Nats-Msg-Id`).
    """
    fallback = telemetry.inject_headers()  # the relay's own context, for rows stored without
    acks: list[asyncio.Future[Any]] = []
    try:
        for row in rows:
            headers: dict[str, str] = dict(row.headers) if row.headers else dict(fallback)
            headers[messaging.MSG_ID] = msg_id(table, row.id)
            ack = await js.publish_async(row.subject, bytes(row.payload), headers=headers)  # pyright: ignore[reportUnknownMemberType]  # nats-py: untyped headers dict
            acks.append(ack)
        async with asyncio.timeout(PUBLISH_TIMEOUT):
            await asyncio.gather(*acks)
    finally:
        for ack in acks:  # frees the client's pending slots of acks that will never come
            ack.cancel()


async def forget(
    conn: AsyncConnection, table: Table, rows: Sequence[Row[Any, Any, Any, Any]]
) -> None:
    await conn.execute(delete(table).where(table.c.id.in_([row.id for row in rows])))


_local_relays: dict[str, set["Relay"]] = {}


def wake_local(table: Table) -> None:
    """Wake this process's relays of `table` (call after the commit; see the module notes)."""
    for relay in _local_relays.get(table.fullname, ()):
        relay.wake()


class Relay:
    """Publishes committed outbox rows to JetStream: woken by NOTIFY, swept every `interval`."""

    def __init__(
        self,
        engine: AsyncEngine,
        js: JetStreamContext,
        table: Table,
        *,
        interval: timedelta,
        batch: int,
        linger: timedelta = timedelta(0),
        vacuum_every: int = 10_000,
    ) -> None:
        self.engine = engine
        self.js = js
        self.table = table
        self.interval = interval.total_seconds()
        self.batch = batch
        self.linger = linger.total_seconds()
        self.vacuum_every = vacuum_every
        self._since_vacuum = 0
        self._wake = asyncio.Event()

    async def relay_once(self) -> int:
        """Publish up to one batch; returns how many rows went out."""
        async with self.engine.begin() as conn:
            rows = await claim_batch(conn, self.table, self.batch)
            if rows:
                await publish_rows(self.js, self.table, rows)
                await forget(conn, self.table, rows)
        self._since_vacuum += len(rows)
        if self.vacuum_every and self._since_vacuum >= self.vacuum_every:
            self._since_vacuum = 0
            await self.vacuum()
        return len(rows)

    async def vacuum(self) -> None:
        """VACUUM the outbox: every pass's `ORDER BY id` scan walks the index entries of deleted
        rows until a vacuum removes them, and autovacuum comes by once a minute at best. The
        table holds only unpublished rows, so this is cheap; a failure is logged, not raised.
        """
        try:
            async with self.engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text(f"VACUUM {self.table.schema}.{self.table.name}"))
        except Exception:  # noqa: BLE001 - a skipped vacuum only costs speed
            log.warning("outbox.vacuum_failed", extra={"schema": self.table.schema})

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        relays = _local_relays.setdefault(self.table.fullname, set())
        relays.add(self)
        try:
            await self._run()
        finally:
            relays.discard(self)

    async def _run(self) -> None:
        async with self._listening():
            while True:
                self._wake.clear()
                try:
                    sent = await self.relay_once()
                except Exception:  # NATS or Postgres down: rows stay, the next pass retries
                    log.exception("outbox.relay_failed", extra={"schema": self.table.schema})
                    sent = 0
                if sent == self.batch:
                    continue  # more may be waiting; don't sleep on a backlog
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
                # lands as the wake-up fires, and the relay would then never stop
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval):
                        await self._wake.wait()
                        # woken by a commit: let the commits right behind it join this pass
                        # (one pass per burst, not one per commit)
                        await asyncio.sleep(self.linger)

    @contextlib.asynccontextmanager
    async def _listening(self) -> AsyncGenerator[None]:
        """Hold one connection LISTENing on the outbox channel; fall back to the sweep alone."""
        async with self.engine.connect() as conn:
            driver: Any = (await conn.get_raw_connection()).driver_connection
            name = channel(self.table)

            def wake(*_args: object) -> None:
                self._wake.set()

            await driver.add_listener(name, wake)
            try:
                yield
            finally:
                with contextlib.suppress(Exception):
                    await driver.remove_listener(name, wake)
