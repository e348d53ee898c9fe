"""Separate outbox against the task history as the queue's outbox: the full cycle, each way.

    uv run python bench/outbox_bench.py                 # 3 rounds of each way per cell
    uv run python bench/outbox_bench.py --quick         # 1 round, fewer tasks (a smoke run)
    uv run python bench/outbox_bench.py --rounds 5 --batches 100 --workers 1,8

Issue 16 asks whether the history could serve as the queue's outbox (no outbox insert and
delete per event). The ways run here, against real Postgres (durable, `fast=False`) and
JetStream, on the queue's own transition statements (`store_batch`'s submit, claim, lock and
report, with `queue.` replaced by a scratch schema per way, so no service schema is touched):

- **a, today**: each statement moves tasks, inserts history rows and outbox rows; the real
  `outbox.Relay` locks the oldest outbox rows (`FOR UPDATE SKIP LOCKED`), publishes them with
  `Nats-Msg-Id`, waits for the PubAcks and DELETEs them in the same transaction.
- **b, history as outbox**: the history row carries the event (`subject`, `payload`,
  `headers`) and `published = false`; a partial index holds the unpublished rows. The same
  relay, with its two statements swapped, locks unpublished history rows `SKIP LOCKED` in id
  order, publishes with the history id as `Nats-Msg-Id`, waits for the PubAcks and UPDATEs
  them to `published = true` in the same transaction. The statements are the queue's, with
  the `ev` CTE folded into `hist` (the bench fails if that shape is no longer found).
- **c, history as outbox, lean**: as (b), but the history row carries only `subject` and
  `headers`: the relay's pass builds each event's payload from the row and its task (the same
  `event_sql`), so the row it rewrites on publish is small.

A cell is (tasks per statement, concurrent workers). Each round of a way runs the issue's cycle
in-process on an asyncpg pool, as the queue's direct path does: submit every task (B per
statement, W submitters), then W workers loop claim B -> lock + report completed (one
transaction) until a claim finds nothing, waking the relay after each commit
(`Relay.wake()`, as the ops do). The round ends when every event is acked by JetStream
and its row's delete/mark committed (backlog 0); the stream's message count is checked to
have grown by exactly 3 per task. Ways alternate a/b/c, then c/b/a, round by round. The schemas
start with the same pre-filled history (`--history` completed tasks, 3 rows each), since the
cost of (b) and (c) grows with the history (its vacuum and indexes) while the outbox stays small.

Prints a table, then one JSON object as the very last line of stdout.
"""

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any, Final

import asyncpg
import nats
import queue_bench
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from rich.console import Console
from rich.table import Table
from sqlalchemy import MetaData, Table as SqlTable
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agentcom_common import embedded, outbox
from agentcom_common.contracts.task import TaskTransition
from agentcom_queue import direct, store_batch, tables

Json = dict[str, Any]

STREAM = "OBXBENCH"
RELAY_BATCH = 1_000  # rows per relay pass: AGENTCOM_OUTBOX_BATCH as queue_bench runs the queue
RELAY_LINGER = timedelta(milliseconds=5)  # the services' default outbox_linger
RELAY_INTERVAL = timedelta(seconds=1)  # the services' default outbox_interval
SAMPLE_EVERY = 0.02  # seconds between two backlog/lag samples
CATCHUP_LIMIT = 120.0  # seconds a round waits for the relay before failing
TRACE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
WAYS = ("a", "b", "c")
WAY_NAMES = {
    "a": "outbox table (today)",
    "b": "history as outbox",
    "c": "history as outbox, lean",
}

progress = Console(stderr=True)


# ------------------------------------------------------------------------------------------
# the two schemas and their statements


def _schema(way: str) -> str:
    return f"outbox_bench_{way}"


def _fold_event_into_history(sql: str, *, lean: bool) -> str:
    """The queue's statement with its `ev` CTE (outbox insert) folded into `hist`: the history
    row carries subject, payload and headers (`lean`: subject and headers only; the relay builds
    the payload), in the outbox's order. Fails if the statement's shape moved.
    """
    pattern = re.compile(
        r"INSERT INTO (\w+)\.task_history \(task_id, from_state, to_state, generation, reason,"
        r" actor\)\n    SELECT (.*?) FROM moved m\n\), ev AS \(\n    INSERT INTO \1\.outbox "
        r"\(subject, payload, headers\)\n    SELECT (.*?)\n    FROM moved m ORDER BY (.*?)\n\)",
        re.DOTALL,
    )

    def folded(match: re.Match[str]) -> str:
        schema, hist, event, order = match.group(1, 2, 3, 4)
        columns = "subject, payload, headers"
        if lean:  # the event's select list is: subject, convert_to(...), headers (its own line)
            subject, rest = event.split(",", 1)
            event = f"{subject}, {rest.rsplit(chr(10), 1)[1].strip()}"
            columns = "subject, headers"
        return (
            f"INSERT INTO {schema}.task_history (task_id, from_state, to_state, generation, "
            f"reason, actor, {columns})\n    SELECT {hist},\n    {event}\n"
            f"    FROM moved m ORDER BY {order}\n)"
        )

    result, count = pattern.subn(folded, sql)
    if count != 1:
        raise RuntimeError(f"expected one hist/ev CTE pair in the queue's statement, found {count}")
    return result


@dataclass(frozen=True, slots=True)
class Statements:
    """One way's asyncpg statements (`$n` parameters), from the queue's own SQL."""

    submit: str
    claim: str
    lock: str
    report: str
    backlog: str

    @staticmethod
    def of(way: str) -> "Statements":
        schema = _schema(way)

        def sql(text: str, names: Sequence[str]) -> str:
            text = text.replace(f"{store_batch.SCHEMA}.", f"{schema}.")
            if way != "a":
                text = _fold_event_into_history(text, lean=way == "c")
            return store_batch.numbered(text, names)

        age = "extract(epoch FROM now() - min({}))::float8"
        if way == "a":
            backlog = f"SELECT count(*), {age.format('created_at')} FROM {schema}.outbox"
        else:
            backlog = (
                f"SELECT count(*), {age.format('at')} FROM {schema}.task_history "
                "WHERE NOT published"
            )
        return Statements(
            submit=sql(store_batch.SUBMIT_SQL, ("tasks", "headers", "traced", "subject")),
            claim=sql(
                store_batch.CLAIM_SQL,
                ("agent", "capabilities", "repos", "limit", "headers", "subject"),
            ),
            lock=store_batch.LOCK_ASYNCPG.replace(f"{store_batch.SCHEMA}.", f"{schema}."),
            report=sql(store_batch.REPORT_SQL, ("reports", "headers")),
            backlog=backlog,
        )


def relay_table(way: str) -> SqlTable:
    """The table the way's relay reads: the outbox (a) or the history (b, c)."""
    if way == "a":
        return tables.outbox_table.to_metadata(MetaData(), schema=_schema(way))
    return SqlTable("task_history", MetaData(), schema=_schema(way))


# (c): the payload of a history row's event, as `store_batch` builds it for the outbox; goal
# and risk tier come from the task row (`_RISK_TIER`'s rule, read at publish time)
_LEAN_PAYLOAD: Final = store_batch.event_sql(
    task_id="h.task_id",
    from_state="h.from_state",
    to_state="h.to_state",
    generation="h.generation",
    reason="h.reason",
    actor="h.actor",
    goal_id="t.goal_id",
    at=store_batch.at_sql("h.at"),
    risk_tier="""CASE WHEN h.to_state IN ('completed', 'partial_pass')
        AND t.result #>> '{delivery,risk,tier}' IN ('1', '2', '3')
        AND jsonb_typeof(t.result #> '{delivery,risk,tier}') = 'number'
        THEN (t.result #>> '{delivery,risk,tier}')::int END""",
)


class HistoryRelay(outbox.Relay):
    """`outbox.Relay` reading the history: lock unpublished rows, publish, mark them published.

    Same pass, batch, wake-ups, linger, sweep and periodic VACUUM as today's relay; only its
    two statements differ (the partial index `task_history_unpublished` serves the first).
    `lean` (c): the row has no payload; the pass builds it from the row and its task.
    """

    def __init__(
        self, engine: AsyncEngine, js: JetStreamContext, table: SqlTable, *, lean: bool
    ) -> None:
        super().__init__(
            engine, js, table, interval=RELAY_INTERVAL, batch=RELAY_BATCH, linger=RELAY_LINGER
        )
        name = f"{table.schema}.{table.name}"
        if lean:
            self._claim_sql = (
                f"SELECT h.id, h.subject, {_LEAN_PAYLOAD}, h.headers::text FROM {name} h "
                f"JOIN {table.schema}.tasks t ON t.id = h.task_id WHERE NOT h.published "
                "ORDER BY h.id LIMIT $1 FOR UPDATE OF h SKIP LOCKED"
            )
        else:
            self._claim_sql = (
                f"SELECT id, subject, payload, headers::text FROM {name} WHERE NOT published "
                "ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"
            )
        self._forget_sql = f"UPDATE {name} SET published = true WHERE id = ANY($1::bigint[])"


def make_relay(way: str, engine: AsyncEngine, js: JetStreamContext) -> outbox.Relay:
    table = relay_table(way)
    if way == "a":
        return outbox.Relay(
            engine, js, table, interval=RELAY_INTERVAL, batch=RELAY_BATCH, linger=RELAY_LINGER
        )
    return HistoryRelay(engine, js, table, lean=way == "c")


async def create_schemas(engine: AsyncEngine) -> None:
    """The schemas from the queue's own table objects (`tables.py`), then (b)'s and (c)'s extra
    columns and partial index; (b) and (c) have no outbox table."""
    for way in WAYS:
        schema = _schema(way)
        wanted = [tables.tasks, tables.task_deps, tables.task_history, tables.repos]
        if way == "a":
            wanted.append(tables.outbox_table)
        async with engine.begin() as conn:
            await conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
            mapped = await conn.execution_options(schema_translate_map={"queue": schema})
            await mapped.run_sync(
                partial(tables.metadata.create_all, tables=wanted, checkfirst=False)
            )
            if way != "a":
                payload = "ADD COLUMN payload bytea, " if way == "b" else ""
                await conn.exec_driver_sql(
                    f"ALTER TABLE {schema}.task_history ADD COLUMN subject text, {payload}"
                    "ADD COLUMN headers json, ADD COLUMN published boolean NOT NULL DEFAULT false"
                )
                await conn.exec_driver_sql(
                    f"CREATE INDEX task_history_unpublished ON {schema}.task_history (id) "
                    "WHERE NOT published"
                )


async def prefill(db: Any, way: str, count: int) -> None:
    """`count` completed tasks with their 3 history rows each (published, in b), in one go."""
    if count <= 0:
        return
    schema = _schema(way)
    await db.execute(
        f"""INSERT INTO {schema}.tasks (id, state, lane, description, max_retries,
            needed_capabilities, file_hints, success_criteria, verification_steps, complexity,
            depends_on, metadata, submitted_by, generation, assigned_to, result)
        SELECT 'old-' || n, 'completed', 2, 'old task ' || n, 3, '{{}}', '[]', '[]', '[]',
            '{{"score": 1}}', '{{}}', '{{}}', 'bench', 1, 'agent-old', '{{"summary": "done"}}'
        FROM generate_series(1, $1) n""",
        count,
    )
    moves = "(VALUES (NULL, 'queued', 'submitted', 0), ('queued', 'assigned', 'claimed', 1), "
    moves += "('assigned', 'completed', 'completed', 1)) AS v(src, dst, why, gen)"
    if way == "a":
        await db.execute(
            f"""INSERT INTO {schema}.task_history
                (task_id, from_state, to_state, generation, reason, actor)
            SELECT 'old-' || n, v.src, v.dst, v.gen, v.why, 'bench'
            FROM generate_series(1, $1) n, {moves} ORDER BY n""",
            count,
        )
    elif way == "c":
        await db.execute(
            f"""INSERT INTO {schema}.task_history (task_id, from_state, to_state, generation,
                reason, actor, subject, headers, published)
            SELECT 'old-' || n, v.src, v.dst, v.gen, v.why, 'bench',
                'obxbench.old.task.' || v.dst, $2::json, true
            FROM generate_series(1, $1) n, {moves} ORDER BY n""",
            count,
            json.dumps(TRACE),
        )
    else:
        payload = (
            "convert_to(jsonb_build_object('schema_version', 1, 'task_id', 'old-' || n, "
            "'from_state', v.src, 'to_state', v.dst, 'generation', v.gen, 'reason', v.why, "
            "'actor', 'bench', 'goal_id', NULL, 'risk_tier', NULL, "
            "'at', '2026-12-03T00:00:00Z')::text, 'UTF8')"
        )
        await db.execute(
            f"""INSERT INTO {schema}.task_history (task_id, from_state, to_state, generation,
                reason, actor, subject, payload, headers, published)
            SELECT 'old-' || n, v.src, v.dst, v.gen, v.why, 'bench',
                'obxbench.old.task.' || v.dst, {payload}, $2::json, true
            FROM generate_series(1, $1) n, {moves} ORDER BY n""",
            count,
            json.dumps(TRACE),
        )
    await db.execute(f"VACUUM ANALYZE {schema}.tasks, {schema}.task_history")


# ------------------------------------------------------------------------------------------
# one round


def task_values(prefix: str, first: int, size: int) -> list[Json]:
    """Submit rows as `store_batch.submit` sends them (its `None`s dropped, `ord` added)."""
    return [
        {
            "id": f"{prefix}-{first + i}",
            "state": "queued",
            "lane": 2,
            "description": f"{prefix} task {first + i}",
            "max_retries": 3,
            "needed_capabilities": [],
            "file_hints": [],
            "success_criteria": [],
            "verification_steps": [],
            "complexity": {"score": 1, "signals": []},
            "depends_on": [],
            "metadata": {},
            "submitted_by": "bench",
            "ord": i,
        }
        for i in range(size)
    ]


@dataclass(slots=True)
class Lag:
    """Backlog and lag (age of the oldest row not yet published) sampled during a round."""

    ages: list[float] = field(default_factory=list[float])
    backlog_max: int = 0


async def sample(db: Any, sql: str, lag: Lag, stop: asyncio.Event) -> None:
    while not stop.is_set():
        count, oldest = await db.fetchrow(sql)
        lag.backlog_max = max(lag.backlog_max, count)
        lag.ages.append(oldest or 0.0)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SAMPLE_EVERY):
                await stop.wait()


async def stream_messages(js: JetStreamContext) -> int:
    info = await js.stream_info(STREAM)
    return int(info.state.messages)


@dataclass(frozen=True, slots=True)
class Cell:
    batch: int
    workers: int
    tasks: int

    @property
    def key(self) -> str:
        return f"b{self.batch}_w{self.workers}"


@dataclass(frozen=True, slots=True)
class Cycle:
    """What one round's submitters and workers share."""

    pool: Any
    stmts: Statements
    cell: Cell
    relay: outbox.Relay  # woken after each commit, as the ops wake their app's relay
    subject: str  # the events' subject prefix
    prefix: str  # of this round's task ids
    headers: str = json.dumps(TRACE)


async def submit_all(c: Cycle) -> None:
    """Every task, `batch` per submit statement (autocommit, like `submit_batch`), W at once."""

    async def submitter(first: int) -> None:
        for start in range(first, c.cell.tasks, c.cell.workers * c.cell.batch):
            size = min(c.cell.batch, c.cell.tasks - start)
            values = json.dumps(task_values(c.prefix, start, size))
            async with c.pool.acquire() as conn:
                rows = await conn.fetch(
                    c.stmts.submit, values, c.headers, "{}", f"{c.subject}.submitted"
                )
            if len(rows) != size:
                raise RuntimeError(f"submitted {len(rows)} of {size}")
            c.relay.wake()

    await asyncio.gather(*(submitter(w * c.cell.batch) for w in range(c.cell.workers)))


async def complete(c: Cycle, agent: str, claimed: Sequence[Any]) -> int:
    """`report_batch` completed on the direct path: lock in id order, check, report, commit."""
    ids = sorted(row["id"] for row in claimed)
    async with c.pool.acquire() as conn, conn.transaction():
        locked = {row["id"]: row for row in await conn.fetch(c.stmts.lock, ids)}
        moves = [
            {
                "task_id": task_id,
                "agent_id": agent,
                "generation": locked[task_id]["generation"],
                "source": locked[task_id]["state"],
                "target": "completed",
                "reason": "completed",
                "subject": f"{c.subject}.completed",
                "result": {"summary": "done"},
                "last_error": "failed without an error message",
            }
            for task_id in ids
        ]
        moved = await conn.fetch(c.stmts.report, json.dumps(moves), c.headers)
    c.relay.wake()
    if len(moved) != len(ids):
        raise RuntimeError(f"reported {len(moved)} of {len(ids)}")
    return len(moved)


async def drain(c: Cycle) -> int:
    """W workers: claim up to `batch` (one autocommit statement) -> complete, until empty."""

    async def worker(agent: str) -> int:
        done = 0
        while True:
            async with c.pool.acquire() as conn:
                claimed = await conn.fetch(
                    c.stmts.claim, agent, [], [], c.cell.batch, c.headers, f"{c.subject}.assigned"
                )
            c.relay.wake()
            if not claimed:
                return done
            done += await complete(c, agent, claimed)

    return sum(await asyncio.gather(*(worker(f"agent-{w}") for w in range(c.cell.workers))))


async def run_round(
    layout: embedded.PostgresLayout,
    pool: Any,
    db: Any,
    js: JetStreamContext,
    way: str,
    relay: outbox.Relay,
    cell: Cell,
    prefix: str,
    cpu: Callable[[], dict[str, float]],
) -> Json:
    """One round of the cycle for one way; returns its figures."""
    stmts = Statements.of(way)
    c = Cycle(pool, stmts, cell, relay, f"obxbench.{way}.task", prefix)
    before_msgs = await stream_messages(js)
    wal_before = await db.fetchval("SELECT pg_current_wal_lsn()")
    lag = Lag()
    stop = asyncio.Event()
    sampler_db = await queue_bench.pg_connect(layout, layout.database)
    sampler = asyncio.create_task(sample(sampler_db, stmts.backlog, lag, stop))
    cpu_before = cpu()
    started = time.perf_counter()
    await submit_all(c)
    submitted = time.perf_counter()
    done = await drain(c)
    committed = time.perf_counter()
    if done != cell.tasks:
        raise RuntimeError(f"{way}: completed {done} of {cell.tasks}")
    async with asyncio.timeout(CATCHUP_LIMIT):
        while (await db.fetchrow(stmts.backlog))[0]:  # noqa: ASYNC110 - a table, no event to wait on
            await asyncio.sleep(0.002)
    acked = time.perf_counter()
    cpu_after = cpu()
    stop.set()
    await sampler
    await sampler_db.close()
    wal = await db.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)", wal_before)
    events = await stream_messages(js) - before_msgs
    if events != 3 * cell.tasks:
        raise RuntimeError(f"{way}: JetStream stored {events} events for {cell.tasks} tasks")
    for kind, state in (
        ("submitted", "queued"),
        ("assigned", "assigned"),
        ("completed", "completed"),
    ):
        last = await js.get_last_msg(STREAM, f"{c.subject}.{kind}")  # each way's events are
        event = TaskTransition.model_validate_json(last.data or b"")  # the contract's
        if not event.task_id.startswith(f"{prefix}-") or event.to_state.value != state:
            raise RuntimeError(f"{way}: unexpected {kind} event {event!r}")
    ages = sorted(lag.ages) or [0.0]
    used = queue_bench.cpu_per_task(cpu_before, cpu_after, cell.tasks, "cpu")
    return {
        "way": way,
        "cell": cell.key,
        "tasks_per_s": cell.tasks / (acked - started),
        "committed_per_s": cell.tasks / (committed - started),
        "submit_s": submitted - started,
        "catchup_s": acked - committed,
        "lag_p50_ms": 1000 * statistics.median(ages),
        "lag_max_ms": 1000 * ages[-1],
        "backlog_max": lag.backlog_max,
        "wal_bytes_per_task": float(wal) / cell.tasks,
        "pg_cpu_ms_per_task": used["cpu_cpu_ms_per_task_postgres"],
        "client_cpu_ms_per_task": used["cpu_cpu_ms_per_task_client"],
        "nats_cpu_ms_per_task": used["cpu_cpu_ms_per_task_nats"],
    }


# ------------------------------------------------------------------------------------------
# the run


COST_TABLES = (("a", "task_history"), ("a", "outbox"), ("b", "task_history"), ("c", "task_history"))
COST_COLUMNS = ("n_tup_ins", "n_tup_upd", "n_tup_hot_upd", "n_tup_del", "n_dead_tup", "vacuums")


async def table_costs(db: Any) -> Json:
    """What each way left in its tables: rows inserted/updated (HOT)/deleted, dead tuples and
    vacuums (read after the pools closed, so every backend's statistics are flushed), the size
    with indexes, and the size after a plain VACUUM (which returns only trailing pages)."""
    figures: Json = {}
    for way, name in COST_TABLES:
        relation = f"{_schema(way)}.{name}"
        row = await db.fetchrow(
            "SELECT n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del, n_dead_tup, "
            "vacuum_count + autovacuum_count AS vacuums "
            "FROM pg_stat_user_tables WHERE relid = $1::regclass",
            relation,
        )
        prefix = f"{way}_{name}"
        figures |= {f"{prefix}_{k}": int(v) for k, v in dict(row).items()}
        size = "SELECT pg_total_relation_size($1::regclass)"
        figures[f"{prefix}_mb"] = await db.fetchval(size, relation) / 2**20
        await db.execute(f"VACUUM {relation}")
        figures[f"{prefix}_mb_after_vacuum"] = await db.fetchval(size, relation) / 2**20
    for way in ("b", "c"):
        index = f"{_schema(way)}.task_history_unpublished"
        figures[f"{way}_unpublished_index_kb"] = (
            await db.fetchval("SELECT pg_relation_size($1::regclass)", index) / 1024
        )
    return figures


async def _keep(_conn: Any) -> None:
    """Release without `RESET ALL`, as the queue's claim pool does."""


async def run(srv: queue_bench.Servers, args: argparse.Namespace) -> Json:
    await embedded.wait_for_postgres(srv.layout, deadline=60)
    await embedded.create_database(srv.layout)
    layout = srv.layout
    engine = create_async_engine(layout.url.replace("postgresql://", "postgresql+asyncpg://"))
    nc = await nats.connect(srv.nats_url)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
    js = nc.jetstream()  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
    db = await queue_bench.pg_connect(layout, layout.database)
    figures: Json = {
        "bench": "outbox",
        "rounds": args.rounds,
        "history_prefill_tasks": args.history,
        "relay_batch": RELAY_BATCH,
        "postgres_durable": True,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "postgres": await db.fetchval("SHOW server_version"),
    }
    cells = [
        Cell(batch, workers, args.tasks_per_batch_1 if batch == 1 else args.tasks)
        for batch in args.batches
        for workers in args.workers
    ]
    rounds: list[Json] = []
    try:
        await js.add_stream(  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
            StreamConfig(
                name=STREAM,
                subjects=["obxbench.>"],
                storage=StorageType.FILE,
                duplicate_window=600.0,  # the services' dedup_window
            )
        )
        await create_schemas(engine)
        for way in WAYS:
            progress.log(f"{way}: pre-filling {args.history:,} completed tasks of history")
            await prefill(db, way, args.history)
        relays = {way: make_relay(way, engine, js) for way in WAYS}
        loops = [asyncio.create_task(relay.run()) for relay in relays.values()]
        create_pool: Any = asyncpg.create_pool  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # asyncpg: no stubs
        max_workers = max(args.workers)
        pool: Any = await create_pool(
            host=str(layout.socket_dir),
            port=layout.port,
            user=layout.user,
            database=layout.database,
            min_size=max_workers,
            max_size=max_workers,
            reset=_keep,
            server_settings=direct.PLANNER,  # the queue's claim pool's planner settings
        )
        cpu = lambda: queue_bench.cpu_snapshot(srv, None)  # noqa: E731
        try:
            n = 0
            for cell in cells:
                for r in range(args.rounds):
                    order = WAYS if r % 2 == 0 else WAYS[::-1]
                    for way in order:
                        n += 1
                        result = await run_round(
                            layout, pool, db, js, way, relays[way], cell, f"r{n}", cpu
                        )
                        result["round"] = r
                        rounds.append(result)
                        progress.log(
                            f"{cell.key} round {r + 1} {way}: {result['tasks_per_s']:,.0f} tasks/s"
                            f", catch-up {result['catchup_s'] * 1000:.0f} ms, "
                            f"lag p50 {result['lag_p50_ms']:.0f} ms"
                        )
        finally:
            for loop in loops:
                loop.cancel()
            for loop in loops:
                with contextlib.suppress(asyncio.CancelledError):
                    await loop
            await pool.close()
            await engine.dispose()
        figures |= await table_costs(db)
    finally:
        await db.close()
        await nc.close()
    figures |= summarize(cells, rounds)
    figures["rounds_detail"] = rounds
    return figures


MEASURES = (
    "tasks_per_s",
    "committed_per_s",
    "catchup_s",
    "lag_p50_ms",
    "lag_max_ms",
    "wal_bytes_per_task",
    "pg_cpu_ms_per_task",
    "client_cpu_ms_per_task",
)


def summarize(cells: list[Cell], rounds: list[Json]) -> Json:
    """Median of each measure per cell and way, and b/a of the medians of the full cycle."""
    figures: Json = {}
    for cell in cells:
        for way in WAYS:
            mine = [r for r in rounds if r["cell"] == cell.key and r["way"] == way]
            for measure in MEASURES:
                figures[f"{cell.key}_{way}_{measure}"] = statistics.median(r[measure] for r in mine)
            figures[f"{cell.key}_{way}_tasks_per_s_all"] = [round(r["tasks_per_s"]) for r in mine]
        a = figures[f"{cell.key}_a_tasks_per_s"]
        for way in WAYS[1:]:
            figures[f"{cell.key}_ratio_{way}_over_a"] = figures[f"{cell.key}_{way}_tasks_per_s"] / a
    return figures


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.3f}"
    if isinstance(value, list):
        return " / ".join(f"{v:,}" for v in value)  # pyright: ignore[reportUnknownVariableType]  # a JSON list
    return f"{value:,}" if isinstance(value, int) else "—"


def report(figures: Json, cells: Sequence[str]) -> None:
    table = Table(
        title=f"outbox bench: {figures['rounds']} rounds per way, history pre-filled with "
        f"{figures['history_prefill_tasks']:,} tasks, durable Postgres "
        f"{figures['postgres']}, {figures['cpus']} CPUs"
    )
    table.add_column("cell (tasks per statement, workers)")
    table.add_column("measure (median of rounds)")
    for way in WAYS:
        table.add_column(f"{way}: {WAY_NAMES[way]}", justify="right")
    table.add_column("b / a, c / a", justify="right")
    for key in cells:
        for measure in (*MEASURES, "tasks_per_s_all"):
            values = [figures[f"{key}_{way}_{measure}"] for way in WAYS]
            ratio = ""
            if measure == "tasks_per_s":
                ratio = ", ".join(f"{figures[f'{key}_ratio_{w}_over_a']:.3f}" for w in WAYS[1:])
            table.add_row(key if measure == MEASURES[0] else "", measure, *map(_fmt, values), ratio)
    Console(width=120).print(table)
    costs = Table(
        title="what each way left in its tables at the end of the run (partial index "
        f"task_history_unpublished: b {figures['b_unpublished_index_kb']:,.0f} kB, "
        f"c {figures['c_unpublished_index_kb']:,.0f} kB)"
    )
    costs.add_column("table")
    for column in (*COST_COLUMNS, "mb", "mb_after_vacuum"):
        costs.add_column(column.removeprefix("n_tup_"), justify="right")
    for way, name in COST_TABLES:
        prefix = f"{way}_{name}"
        values = [figures[f"{prefix}_{c}"] for c in (*COST_COLUMNS, "mb", "mb_after_vacuum")]
        costs.add_row(f"{way}: {_schema(way)}.{name}", *map(_fmt, values))
    Console(width=120).print(costs)
    rounded = {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}
    rounded["rounds_detail"] = [
        {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}
        for r in figures["rounds_detail"]
    ]
    sys.stdout.write(json.dumps(rounded) + "\n")


def _ints(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive integers")
    return values


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Outbox table vs history as outbox.")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of each way (3)")
    parser.add_argument("--batches", type=_ints, default=[1, 100], help="tasks per statement")
    parser.add_argument("--workers", type=_ints, default=[1, 8], help="concurrent workers")
    parser.add_argument("--tasks", type=int, default=None, help="tasks per round (1,500)")
    parser.add_argument(
        "--tasks-per-batch-1", type=int, default=None, help="tasks per round at batch 1 (100)"
    )
    parser.add_argument(
        "--history", type=int, default=None, help="completed tasks pre-filled (20,000)"
    )
    parser.add_argument("--quick", action="store_true", help="1 round, few tasks, small history")
    args = parser.parse_args(argv)
    quick: bool = args.quick
    defaults = (1, 200, 40, 1_000) if quick else (3, 1_500, 100, 20_000)
    for name, default in zip(
        ("rounds", "tasks", "tasks_per_batch_1", "history"), defaults, strict=True
    ):
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.rounds < 1 or args.tasks < 1 or args.tasks_per_batch_1 < 1 or args.history < 0:
        parser.error("--rounds and --tasks must be positive, --history not negative")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    with queue_bench.servers() as srv:
        figures = asyncio.run(run(srv, args))
    cells = [f"b{b}_w{w}" for b in args.batches for w in args.workers]
    report(figures, cells)


if __name__ == "__main__":
    main()
