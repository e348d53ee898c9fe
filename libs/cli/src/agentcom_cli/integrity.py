"""`agentcom doctor --deep`: what can be checked inside a stack's data, and how to repair it.

- Postgres pages and indexes with `amcheck` (`verify_heapam`, `bt_index_check`) where the
  extension can be created (a superuser, as with the embedded server), else said to be skipped;
- every service's outbox: rows waiting for the relay, and how long the oldest has waited;
- JetStream consumers of EVENTS and REPORTS that have messages waiting and delivered nothing
  for `STUCK_AFTER`;
- rows that point at what no longer exists across services (the CLI may read every schema; a
  service never does): tasks held by unknown agents, agents holding a task the queue gave to
  no one or to another, goal tasks the queue does not know.
"""

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from agentcom_cli.doctor import Finding
from agentcom_cli.dumps import SCHEMAS
from agentcom_common import clock, messaging, subjects

if TYPE_CHECKING:
    from agentcom_common.settings import CommonSettings

STUCK_AFTER: Final = timedelta(minutes=5)
BACKLOG_WARN: Final = timedelta(minutes=1)

ORPHANS: Final = {
    "tasks held by unknown agents": (
        "SELECT t.id FROM queue.tasks t WHERE t.state IN ('assigned', 'working')"
        " AND NOT EXISTS (SELECT 1 FROM scheduler.agents a WHERE a.id = t.assigned_to)",
        "the queue's sweeper hands them back once their deadline passes; to hurry it, "
        "cancel them (`agentcom task cancel ID`) and submit them again",
    ),
    "agents holding a task the queue gave elsewhere": (
        "SELECT a.id FROM scheduler.agents a WHERE a.task_id IS NOT NULL AND NOT EXISTS"
        " (SELECT 1 FROM queue.tasks t WHERE t.id = a.task_id AND t.assigned_to = a.id"
        " AND t.state IN ('assigned', 'working'))",
        "the scheduler's sweep frees them; if it persists, restart the scheduler",
    ),
    "goal tasks the queue does not know": (
        "SELECT g.task_id FROM hub.goal_tasks g"
        " WHERE NOT EXISTS (SELECT 1 FROM queue.tasks t WHERE t.id = g.task_id)",
        "retry the goal (`agentcom goal retry ID`), or restore from a backup "
        "(`agentcom restore`; docs/operations.md)",
    ),
}


async def run(settings: "CommonSettings") -> list[Finding]:
    """Every deep check of the stack of `settings` (its Postgres started for the checks when
    the embedded stack is stopped; its consumers only while NATS runs)."""
    from agentcom_cli import backup, stack

    async with backup.database(settings, purpose="doctor --deep") as url:
        found = await database(url)
    if settings.nats_url or stack.read(settings.home.resolve()) is not None:
        return found + await consumers(stack.hub_nats_url(settings))
    return [*found, Finding("consumers", True, "not checked: the stack is not running")]


async def _connect(url: str) -> Any:
    import asyncpg
    from sqlalchemy.engine import make_url

    connect: Any = asyncpg.connect  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # asyncpg: no stubs
    return await connect(make_url(url).set(drivername="postgresql").render_as_string(False))


async def database(url: str) -> list[Finding]:
    conn = await _connect(url)
    try:
        present = {
            r["nspname"]
            for r in await conn.fetch(
                "SELECT nspname FROM pg_namespace WHERE nspname = ANY($1::text[])", list(SCHEMAS)
            )
        }
        outboxes = {
            r["schemaname"]
            for r in await conn.fetch(
                "SELECT schemaname FROM pg_tables WHERE tablename = 'outbox'"
                " AND schemaname = ANY($1::text[])",
                list(SCHEMAS),
            )
        }
        found = [await _amcheck(conn)]
        found += [await _outbox(conn, schema) for schema in SCHEMAS if schema in outboxes]
        if {"queue", "scheduler", "hub"} <= present:
            found += [await _orphans(conn, name, sql, fix) for name, (sql, fix) in ORPHANS.items()]
        return found
    finally:
        await conn.close()


async def _amcheck(conn: Any) -> Finding:
    import asyncpg

    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
    except asyncpg.PostgresError as exc:
        return Finding("amcheck", True, f"skipped: amcheck is not available here ({exc})")
    tables = await conn.fetch(
        "SELECT c.oid, n.nspname || '.' || c.relname AS name FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind = 'r' AND n.nspname = ANY($1::text[])",
        list(SCHEMAS),
    )
    indexes = await conn.fetch(
        "SELECT c.oid, n.nspname || '.' || c.relname AS name FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_am am ON am.oid = c.relam"
        " WHERE am.amname = 'btree' AND i.indisvalid AND n.nspname = ANY($1::text[])",
        list(SCHEMAS),
    )
    broken: list[str] = []
    for table in tables:
        found = "SELECT count(*) FROM pg_class c, verify_heapam(c.oid) WHERE c.oid = $1"
        if await conn.fetchval(found, table["oid"]):
            broken.append(f"table {table['name']}")
    for index in indexes:
        try:
            await conn.execute(
                "SELECT bt_index_check(c.oid, true) FROM pg_class c WHERE c.oid = $1", index["oid"]
            )
        except asyncpg.PostgresError as exc:
            broken.append(f"index {index['name']} ({exc})")
    if broken:
        return Finding(
            "amcheck",
            False,
            "corrupt: " + "; ".join(broken),
            "REINDEX each index named; for a table, restore the newest good backup "
            "(`agentcom restore FILE`, docs/operations.md)",
        )
    return Finding("amcheck", True, f"{len(tables)} tables and {len(indexes)} indexes intact")


async def _outbox(conn: Any, schema: str) -> Finding:
    row = await conn.fetchrow(
        f'SELECT count(*) AS n, min(created_at) AS oldest FROM "{schema}".outbox'
    )
    if row is None or not row["n"]:
        return Finding(f"outbox {schema}", True, "empty: every event was relayed")
    waited = clock.now() - row["oldest"]
    detail = f"{row['n']} events waiting, the oldest for {str(waited).split('.')[0]}"
    if waited < BACKLOG_WARN:
        return Finding(f"outbox {schema}", True, detail)
    return Finding(
        f"outbox {schema}",
        False,
        detail,
        "the relay publishes once NATS answers: check `agentcom status` (nats) and the "
        "service's log; nothing is lost while the rows wait",
    )


async def _orphans(conn: Any, name: str, sql: str, fix: str) -> Finding:
    ids = [str(r[0]) for r in await conn.fetch(sql + " LIMIT 20")]
    if not ids:
        return Finding(name, True, "none")
    return Finding(name, False, ", ".join(ids), fix)


async def consumers(nats_url: str) -> list[Finding]:
    """Consumers of the hub's streams with work waiting and no delivery for STUCK_AFTER."""
    try:
        nc = await messaging.connect_once(nats_url, 2.0)
    except Exception as exc:  # noqa: BLE001 - any failure to connect is the finding
        return [
            Finding(
                "consumers",
                False,
                f"NATS unreachable ({type(exc).__name__})",
                "start the stack (`agentcom up`); see `agentcom status`",
            )
        ]
    try:
        js = nc.jetstream()  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
        stuck: list[str] = []
        seen = 0
        now = clock.now()
        for stream in (subjects.EVENTS_STREAM, subjects.REPORTS_STREAM):
            for info in await js.consumers_info(stream):
                seen += 1
                waiting = (info.num_pending or 0) + (info.num_ack_pending or 0)
                last = _when(info.delivered.last_active if info.delivered else None)
                if waiting and (last is None or now - last > STUCK_AFTER):
                    stuck.append(f"{stream}/{info.name} ({waiting} waiting)")
    finally:
        await nc.close()
    if stuck:
        return [
            Finding(
                "consumers",
                False,
                "stuck: " + ", ".join(stuck),
                "restart the service that owns each (its name starts the consumer's); "
                "`nats consumer info STREAM NAME` shows the redeliveries",
            )
        ]
    return [Finding("consumers", True, f"{seen} consumers of EVENTS and REPORTS delivering")]


def _when(value: object) -> datetime | None:
    """nats-py hands `last_active` over as the server wrote it (RFC 3339, nanoseconds)."""
    if isinstance(value, datetime) or value is None:
        return value
    text = str(value).replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:  # Python parses at most microseconds
        digits = "".join(c for c in rest if c.isdigit())
        text = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
