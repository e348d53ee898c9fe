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

A pass is one transaction on the relay's own connection (raw asyncpg): lock the oldest rows
(`FOR UPDATE SKIP LOCKED`, id order), publish them in that order with plain publishes whose
replies (JetStream PubAcks) come to one reply subject per batch, wait until every ack came,
then delete the rows and commit. A refusal or a late ack fails the pass: nothing is deleted.

Hot paths may skip the `NOTIFY` and call their app's `Relay.wake()` after their commit instead
(the shell hands it out as `Resources.relay`). Postgres serialises the commits of notifying transactions on
one database-wide lock, so a NOTIFY per transaction defeats group commit under load; a replica
that was not woken still publishes the rows on its next sweep.

Size: one job, getting committed rows onto JetStream exactly once; the write side, the relay's
pass and its wake-ups share the table and the failure rules above.
"""

import asyncio
import contextlib
import json
import logging
import math
import weakref
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
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

from agentcom_common import clock, messaging, metering, telemetry
from agentcom_common.contracts import Contract

log = logging.getLogger(__name__)

_m = metering.meter("agentcom.outbox")
_sent = _m.create_counter(
    "messaging.client.sent.messages",
    unit="{message}",
    description="Events the outbox relay published to JetStream, by service.",
)
_backlog = metering.Sampled(
    _m, "agentcom.outbox.backlog", "{message}", "Outbox rows not yet published, by service."
)
_lag = metering.Sampled(
    _m,
    "agentcom.outbox.lag",
    "s",
    "Age of the oldest outbox row not yet published (0 when none), by service.",
)


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
YIELD_EVERY = 100  # rows published between two turns of the event loop (a batch is up to 1,000)


@dataclass(frozen=True, slots=True)
class _Row:
    """An outbox row as the relay reads it (`claim_batch`'s SQLAlchemy rows read the same)."""

    id: int
    subject: str
    payload: bytes
    headers: dict[str, str] | None


class PublishError(RuntimeError):
    """JetStream refused a message of the batch (or no stream took it): the batch stays."""


class _Batch:
    """The acks one batch is waiting for: done when all came, failed at the first refusal."""

    __slots__ = ("done", "expected", "got")

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.got = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def ack(self, msg: Msg) -> None:
        if self.done.done():
            return
        status = msg.headers.get("Status") if msg.headers else None
        if status or b'"error"' in msg.data:  # 503: no stream; {"error": {...}}: refused
            self.done.set_exception(PublishError(f"JetStream refused: {status or msg.data!r}"))
            return
        self.got += 1
        if self.got == self.expected:
            self.done.set_result(None)


class _Acks:
    """One wildcard reply subscription per NATS connection, owned by the relays on it.

    Every message of a batch carries the batch's own reply subject `<prefix>.<n>`; a callback
    counts the PubAcks by subject. Cheaper than `publish_async`, which takes a semaphore
    (through `wait_for`: a task per message on 3.11), a token, a future and a JSON parse of
    its ack per message. A late ack of a batch that gave up finds no batch and is dropped.
    """

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.prefix = ""
        self.batches: dict[str, _Batch] = {}
        self._next = 0
        self._lock = asyncio.Lock()

    async def _subscribe(self) -> str:
        async with self._lock:
            if not self.prefix:
                prefix = self.nc.new_inbox()
                await self.nc.subscribe(f"{prefix}.*", cb=self._on_ack)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
                self.prefix = prefix
        return self.prefix

    async def _on_ack(self, msg: Msg) -> None:
        batch = self.batches.get(msg.subject)
        if batch is not None:
            batch.ack(msg)

    async def publish(self, table: Table, rows: Sequence[Any]) -> None:
        prefix = self.prefix or await self._subscribe()
        self._next += 1
        reply = f"{prefix}.{self._next}"
        batch = self.batches[reply] = _Batch(len(rows))
        fallback = telemetry.inject_headers()  # the relay's context, for rows stored without
        try:
            for n, row in enumerate(rows, start=1):
                headers: dict[str, str] = dict(row.headers) if row.headers else dict(fallback)
                headers[messaging.MSG_ID] = msg_id(table, row.id)
                await self.nc.publish(row.subject, bytes(row.payload), reply, headers)
                if n % YIELD_EVERY == 0:  # publish never yields: let waiting requests run
                    await asyncio.sleep(0)
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                await batch.done
        finally:
            del self.batches[reply]


_acks: "weakref.WeakKeyDictionary[Client, _Acks]" = weakref.WeakKeyDictionary()


async def publish_rows(js: JetStreamContext, table: Table, rows: Sequence[Any]) -> None:
    """Publish in id order and await the acks together: one round trip per batch, not per row.

    Plain publishes with a reply subject of the batch (see `_Acks`), each with its row's
    `Nats-Msg-Id`. If any ack is a refusal or late, this raises, the caller's transaction rolls
    back and the whole batch is published again later (JetStream drops the copies by
    `Nats-Msg-Id`).
    """
    if not rows:
        return
    nc: Client = js._nc  # pyright: ignore[reportPrivateUsage]  # the context's own connection
    acks = _acks.get(nc)
    if acks is None:
        acks = _acks[nc] = _Acks(nc)
    await acks.publish(table, rows)


async def forget(
    conn: AsyncConnection, table: Table, rows: Sequence[Row[Any, Any, Any, Any]]
) -> None:
    await conn.execute(delete(table).where(table.c.id.in_([row.id for row in rows])))


async def sample_backlog(engine: AsyncEngine, table: Table) -> None:
    """Set `agentcom.outbox.backlog` and `agentcom.outbox.lag` from the table (one indexed read:
    the table holds only unpublished rows)."""
    async with engine.connect() as conn:
        count, oldest = (
            await conn.execute(select(func.count(), func.min(table.c.created_at)))
        ).one()
    key = table.schema or ""
    attrs = (("agentcom.outbox", key),)
    _backlog.set({attrs: count}, part=key)
    lag = (clock.now() - oldest).total_seconds() if oldest is not None else 0.0
    _lag.set({attrs: max(0.0, lag)}, part=key)


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
        self._pass_started = -math.inf  # loop time the last pass began
        self._last_sent = 0  # rows the last pass published
        self._driver: Any = None  # the asyncpg connection of `_listening`, while it is held
        name = f"{table.schema}.{table.name}" if table.schema else table.name
        self._claim_sql = (
            f"SELECT id, subject, payload, headers::text FROM {name} "
            "ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"
        )
        self._forget_sql = f"DELETE FROM {name} WHERE id = ANY($1::bigint[])"
        self._attrs = {
            "messaging.system": "nats",
            "messaging.operation.name": "publish",
            "agentcom.outbox": table.schema or "",
        }

    async def relay_once(self) -> int:
        """Publish up to one batch; returns how many rows went out.

        On the relay's own connection (the one it LISTENs on) when it runs, else on one from
        the engine's pool; either way as raw asyncpg statements in one transaction: the rows
        are locked, published, their acks awaited, then deleted.
        """
        driver = self._driver
        if driver is not None and not driver.is_closed():
            sent = await self._pass(driver)
        else:
            async with self.engine.connect() as conn:
                sent = await self._pass((await conn.get_raw_connection()).driver_connection)
        self._since_vacuum += sent
        if self.vacuum_every and self._since_vacuum >= self.vacuum_every:
            self._since_vacuum = 0
            await self.vacuum()
        return sent

    async def _pass(self, driver: Any) -> int:
        async with driver.transaction():
            records = await driver.fetch(self._claim_sql, self.batch)
            if records:
                parsed: dict[str | None, dict[str, str] | None] = {None: None}
                rows: list[_Row] = []
                for rid, subject, payload, headers in records:
                    if headers not in parsed:  # a batch's rows mostly share one trace context
                        parsed[headers] = json.loads(headers)
                    rows.append(_Row(rid, subject, payload, parsed[headers]))
                await publish_rows(self.js, self.table, rows)
                await driver.execute(self._forget_sql, [row.id for row in rows])
                _sent.add(len(rows), self._attrs)
        return len(records)

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
        """Run a pass now (call after a commit that skipped the NOTIFY; see the module notes)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                async with self._listening():
                    await self._passes()
            except Exception:  # Postgres down: no connection to hold; try again after a sweep
                log.exception("outbox.relay_failed", extra={"schema": self.table.schema})
                await asyncio.sleep(self.interval)

    async def _passes(self) -> None:
        """Relay passes on the held connection until it is lost."""
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            self._pass_started = loop.time()
            try:
                sent = await self.relay_once()
            except Exception:  # NATS or Postgres down: rows stay, the next pass retries
                log.exception("outbox.relay_failed", extra={"schema": self.table.schema})
                if self._driver is None or self._driver.is_closed():
                    return  # reconnect
                sent = 0
            self._last_sent = sent
            if sent == self.batch:
                continue  # more may be waiting; don't sleep on a backlog
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
            # lands as the wake-up fires, and the relay would then never stop
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
                    await asyncio.sleep(self.linger_after_wake(loop.time()))

    def linger_after_wake(self, now: float) -> float:
        """How long a woken relay waits before its pass.

        While commits keep coming (the last pass carried rows), passes start at most one
        `linger` apart, which gathers the commits of one `linger` into one pass: one pass per
        burst, not one per commit. After a pass that found nothing the relay was quiet, so this
        wake-up is a lone commit or the head of a burst; waiting would only add `linger` to its
        event's latency, so the pass starts at once.
        """
        if self._last_sent == 0:
            return 0.0
        return max(0.0, self._pass_started + self.linger - now)

    @contextlib.asynccontextmanager
    async def _listening(self) -> AsyncGenerator[None]:
        """Hold one connection LISTENing on the outbox channel; fall back to the sweep alone."""
        async with self.engine.connect() as conn:
            driver: Any = (await conn.get_raw_connection()).driver_connection
            name = channel(self.table)

            def wake(*_args: object) -> None:
                self._wake.set()

            await driver.add_listener(name, wake)
            self._driver = driver
            try:
                yield
            finally:
                self._driver = None
                with contextlib.suppress(Exception):
                    await driver.remove_listener(name, wake)
