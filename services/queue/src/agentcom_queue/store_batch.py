"""The hot path's SQL: one prebuilt statement per transition of many tasks at once.

Each statement moves its tasks, writes one history row and one outbox event per task, and
all as one CTE: one round trip, no per-request statement building
(SQLAlchemy Core in store.py spent most of the queue's CPU building and compiling statements).
The guards are the same as store.py's: state in `states.sources(target)`, the expected
generation, `FOR UPDATE SKIP LOCKED` on the claim index's order. Event payloads are the JSON of
`TaskTransition`, built by Postgres from SQL generated from the model's fields (`event_sql`).

No `NOTIFY` here: notifying transactions commit one at a time on a database-wide lock, which
made every batch wait for the previous one's WAL flush. The ops wake this process's relay
after the commit (the app's `Relay.wake()`); other replicas' relays find the rows on their sweep.

Why it is this size (~600 lines): it holds one job, the hot path's statements, and most of its
length is the SQL text of each (claim, claim for agents, submit, report, settle dependents,
sweep) beside the small function that runs it on either driver; splitting it would separate
statements that share their CTE fragments (`_history_and_event`, `event_sql`).
"""

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from sqlalchemy import Row, TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection

from agentcom_common import subjects
from agentcom_common.contracts.task import TaskState, TaskTransition
from agentcom_queue import states

S = TaskState
SCHEMA: Final = "queue"

# `at` as pydantic writes a UTC datetime: microseconds only when there are some
_AT_FORMAT: Final = """'YYYY-MM-DD"T"HH24:MI:SS'"""


def at_sql(timestamp: str) -> str:
    """SQL for `timestamp` (a timestamptz expression) in the JSON form of a contract datetime."""
    utc = f"({timestamp}) AT TIME ZONE 'UTC'"
    return (
        f"to_char({utc}, {_AT_FORMAT}) || CASE WHEN date_trunc('second', {utc}) = {utc} "
        f"""THEN 'Z' ELSE to_char({utc}, '.US"Z"') END"""
    )


def event_sql(**fields: str) -> str:
    """SQL for the payload of one `TaskTransition` event, given an SQL expression per field.

    Built from the model's fields, in their order: a field added to the contract and not given
    here fails at import (no event built in SQL can lack it), and so does one given here that
    the contract does not have. `schema_version` is the model's own; `at` defaults to now.
    The JSON is the same value as `TaskTransition.model_dump_json()` (tests/test_events.py);
    built by Postgres because building it in Python would split each one-statement transition
    (a claim is one autocommit statement) into a read, a model per task and a second insert.
    """
    known = TaskTransition.model_fields
    given = {"schema_version": str(known["schema_version"].default), "at": at_sql("now()")}
    given |= fields
    if missing := known.keys() - given.keys():
        raise ValueError(f"no SQL for TaskTransition fields {sorted(missing)}")
    if unknown := given.keys() - known.keys():
        raise ValueError(f"TaskTransition has no fields {sorted(unknown)}")
    pairs = ", ".join(f"'{name}', {given[name]}" for name in known)
    return f"convert_to(jsonb_build_object({pairs})::text, 'UTF8')"


def _event(
    task: str,
    source: str,
    target: str,
    generation: str,
    reason: str,
    actor: str,
    risk_tier: str = "NULL::int",
) -> str:
    """The event of one row `m` of `moved` (a task row, so it has its `goal_id`)."""
    return event_sql(
        task_id=task,
        from_state=source,
        to_state=target,
        generation=generation,
        reason=reason,
        actor=actor,
        goal_id="m.goal_id",
        risk_tier=risk_tier,
    )


# a delivered change's tier (`result.delivery.risk.tier`) on a completed/partial_pass event,
# as `ops.core._risk_tier` reads it: 1, 2 or 3, else null
_RISK_TIER: Final = """CASE WHEN m.state IN ('completed', 'partial_pass')
    AND m.result #>> '{delivery,risk,tier}' IN ('1', '2', '3')
    AND jsonb_typeof(m.result #> '{delivery,risk,tier}') = 'number'
    THEN (m.result #>> '{delivery,risk,tier}')::int END"""


def _history_and_event(
    source: str,
    target: str,
    reason: str,
    actor: str,
    subject: str,
    headers: str = "CAST(:headers AS json)",
) -> str:
    """The two CTEs every transition adds: the history row and the outbox event of `moved`."""
    return f"""
, hist AS (
    INSERT INTO {SCHEMA}.task_history (task_id, from_state, to_state, generation, reason, actor)
    SELECT m.id, {source}, {target}, m.generation, {reason}, {actor} FROM moved m
), ev AS (
    INSERT INTO {SCHEMA}.outbox (subject, payload, headers)
    SELECT {subject}, {_event("m.id", source, target, "m.generation", reason, actor)},
           {headers}
    FROM moved m ORDER BY m.lane, m.seq
)"""


CLAIM_SQL: Final = f"""
WITH cand AS (
    SELECT t.id FROM {SCHEMA}.tasks t
    WHERE t.state = 'queued'
      AND t.not_before <= now()
      AND t.needed_capabilities <@ CAST(:capabilities AS text[])
      AND (t.repo IS NULL OR NOT EXISTS (
            SELECT 1 FROM {SCHEMA}.repos r WHERE r.url = t.repo AND r.paused))
      AND (cardinality(CAST(:repos AS text[])) = 0 OR t.repo IS NULL
           OR t.repo = ANY(CAST(:repos AS text[])))
    ORDER BY t.lane, t.seq
    LIMIT :limit
    FOR UPDATE OF t SKIP LOCKED
), moved AS (
    UPDATE {SCHEMA}.tasks t
    SET state = 'assigned', generation = t.generation + 1, assigned_to = :agent,
        assigned_at = now(), updated_at = now()
    FROM cand WHERE t.id = cand.id AND t.state = 'queued'
    RETURNING t.*
){_history_and_event("'queued'", "'assigned'", "'claimed'", ":agent", ":subject")}
SELECT m.* FROM moved m ORDER BY m.lane, m.seq
"""
CLAIM: Final[TextClause] = text(CLAIM_SQL)


_CLAIM_PARAMS: Final = ("agent", "capabilities", "repos", "limit", "headers", "subject")


def numbered(sql: str, names: Sequence[str]) -> str:
    """`sql` with its `:name` parameters as asyncpg's `$1…$n`, in the order of `names`."""
    for n, name in enumerate(names, start=1):
        sql = re.sub(rf"(?<![:\w]):{name}\b", f"${n}", sql)
    return sql


CLAIM_ASYNCPG: Final = numbered(CLAIM_SQL, _CLAIM_PARAMS)


class Record(dict[str, Any]):
    """An asyncpg record read like a SQLAlchemy row (`row.id`)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


async def claim_direct(
    driver: Any,
    agent_id: str,
    capabilities: Sequence[str],
    agent_repos: Sequence[str],
    limit: int,
    headers: dict[str, str],
) -> list[Record]:
    """`claim` on a raw asyncpg connection outside any transaction: the statement is one."""
    rows = await driver.fetch(
        CLAIM_ASYNCPG,
        agent_id,
        list(capabilities),
        list(agent_repos),
        limit,
        json.dumps(headers),
        subjects.TASK_ASSIGNED,
    )
    return [Record(row) for row in rows]


async def claim(
    conn: AsyncConnection,
    agent_id: str,
    capabilities: Sequence[str],
    agent_repos: Sequence[str],
    limit: int,
    headers: dict[str, str],
) -> Sequence[Row[Any]]:
    """Assign up to `limit` claimable tasks to `agent_id`, best first; bumps each generation."""
    result = await conn.execute(
        CLAIM,
        {
            "agent": agent_id,
            "capabilities": list(capabilities),
            "repos": list(agent_repos),
            "limit": limit,
            "headers": json.dumps(headers),
            "subject": subjects.TASK_ASSIGNED,
        },
    )
    return result.all()


_CLAIMABLE_FOR_AGENTS: Final = f"""
    FROM {SCHEMA}.tasks t
    WHERE t.state = 'queued'
      AND t.not_before <= now()
      AND t.needed_capabilities <@ CAST(:capabilities AS text[])
      AND (t.repo IS NULL OR NOT EXISTS (
            SELECT 1 FROM {SCHEMA}.repos r WHERE r.url = t.repo AND r.paused))
      AND (cardinality(CAST(:repos AS text[])) = 0 OR t.repo IS NULL
           OR t.repo = ANY(CAST(:repos AS text[])))
      AND NOT (t.id = ANY(CAST(:exclude AS text[])))"""

CLAIM_AGENTS_SQL: Final = f"""
WITH liked AS (  -- tasks preferring one of these agents (`metadata.prefer_agent`; its index)
    SELECT t.id, t.lane, t.seq, t.metadata->>'prefer_agent' AS prefer{_CLAIMABLE_FOR_AGENTS}
      AND (t.metadata->>'prefer_agent') IS NOT NULL
      AND (t.metadata->>'prefer_agent') = ANY(CAST(:agents AS text[]))
    ORDER BY t.lane, t.seq
    LIMIT cardinality(CAST(:agents AS text[]))
    FOR UPDATE OF t SKIP LOCKED
), best AS (  -- the best tasks in lane then age order (the claim index)
    SELECT t.id, t.lane, t.seq, t.metadata->>'prefer_agent' AS prefer{_CLAIMABLE_FOR_AGENTS}
    ORDER BY t.lane, t.seq
    LIMIT cardinality(CAST(:agents AS text[]))
    FOR UPDATE OF t SKIP LOCKED
), cand AS (
    SELECT * FROM liked UNION SELECT * FROM best
), preferred AS (  -- the best task preferring each offered agent goes to that agent
    SELECT DISTINCT ON (c.prefer) c.id, c.prefer AS agent
    FROM cand c WHERE c.prefer = ANY(CAST(:agents AS text[]))
    ORDER BY c.prefer, c.lane, c.seq
), others AS (  -- the rest in lane then age order
    SELECT c.id, row_number() OVER (ORDER BY c.lane, c.seq) AS n
    FROM cand c WHERE c.id NOT IN (SELECT id FROM preferred)
), free AS (  -- the agents not taken by a preference, longest idle first
    SELECT a.agent, row_number() OVER (ORDER BY a.ord) AS n
    FROM unnest(CAST(:agents AS text[])) WITH ORDINALITY AS a(agent, ord)
    WHERE a.agent NOT IN (SELECT agent FROM preferred)
), pick AS (
    SELECT id, agent FROM preferred
    UNION ALL
    SELECT o.id, f.agent FROM others o JOIN free f ON f.n = o.n
), moved AS (
    UPDATE {SCHEMA}.tasks t
    SET state = 'assigned', generation = t.generation + 1, assigned_to = pick.agent,
        assigned_at = now(), updated_at = now()
    FROM pick WHERE t.id = pick.id AND t.state = 'queued'
    RETURNING t.*
){_history_and_event("'queued'", "'assigned'", "'claimed'", "m.assigned_to", ":subject")}
SELECT m.* FROM moved m ORDER BY m.lane, m.seq
"""
CLAIM_AGENTS: Final[TextClause] = text(CLAIM_AGENTS_SQL)
CLAIM_AGENTS_ASYNCPG: Final = numbered(
    CLAIM_AGENTS_SQL, ("agents", "capabilities", "repos", "headers", "subject", "exclude")
)


async def claim_agents(
    conn: AsyncConnection | None,
    driver: Any,
    agent_ids: Sequence[str],
    capabilities: Sequence[str],
    agent_repos: Sequence[str],
    headers: dict[str, str],
    exclude: Sequence[str] = (),
) -> Sequence[Any]:
    """One claimable task for each of `agent_ids` in order (best task to the first agent), in
    one statement; on the raw asyncpg `driver` when given, else on `conn` (autocommit). Tasks
    in `exclude` are not offered."""
    subject = subjects.TASK_ASSIGNED
    if driver is not None:
        rows = await driver.fetch(
            CLAIM_AGENTS_ASYNCPG,
            list(agent_ids),
            list(capabilities),
            list(agent_repos),
            json.dumps(headers),
            subject,
            list(exclude),
        )
        return [Record(row) for row in rows]
    assert conn is not None
    result = await conn.execute(
        CLAIM_AGENTS,
        {
            "agents": list(agent_ids),
            "capabilities": list(capabilities),
            "repos": list(agent_repos),
            "headers": json.dumps(headers),
            "subject": subject,
            "exclude": list(exclude),
        },
    )
    return result.all()


_SUBMIT_COLUMNS: Final = (
    ("id", "text"),
    ("client_key", "text"),
    ("state", "text"),
    ("lane", "smallint"),
    ("description", "text"),
    ("max_retries", "integer"),
    ("complete_by", "timestamptz"),
    ("needed_capabilities", "text[]"),
    ("repo", "text"),
    ("repo_url", "text"),
    ("branch", "text"),
    ("file_hints", "jsonb"),
    ("success_criteria", "jsonb"),
    ("verification_steps", "jsonb"),
    ("complexity", "jsonb"),
    ("depends_on", "text[]"),
    ("goal_id", "text"),
    ("metadata", "jsonb"),
    ("submitted_by", "text"),
    ("blocked_reason", "text"),
)
SUBMIT_FIELDS: Final = tuple(name for name, _ in _SUBMIT_COLUMNS)
_COLS: Final = ", ".join(SUBMIT_FIELDS)
_RECORD: Final = ", ".join(f"{name} {kind}" for name, kind in (*_SUBMIT_COLUMNS, ("ord", "int")))

# a task without a repo inherits the top active one (its key and the URL it was added with),
# read by the same statement
_INHERITED: Final = {
    "repo": "r.url",
    "repo_url": "COALESCE(r.clone_url, r.url)",
}
_INPUT_COLS: Final = ", ".join(
    f"CASE WHEN repo IS NULL THEN (SELECT {_INHERITED[name]} FROM {SCHEMA}.repos r "
    f"WHERE NOT r.paused ORDER BY r.position LIMIT 1) ELSE {name} END"
    if name in _INHERITED
    else name
    for name in SUBMIT_FIELDS
)
# a task in `:traced` carries its own caller's trace context (a group commit joins several
# requests' submits); the others the statement's `:headers`
_TRACED: Final = "COALESCE(CAST(:traced AS jsonb) -> m.id, CAST(:headers AS jsonb))::json"
_SUBMIT_SQL: Final = f"""
WITH input AS (
    SELECT * FROM jsonb_to_recordset(CAST(:tasks AS jsonb)) AS i({_RECORD})
), moved AS (
    INSERT INTO {SCHEMA}.tasks ({_COLS})
    SELECT {_INPUT_COLS} FROM input ORDER BY ord
    ON CONFLICT (client_key) WHERE client_key IS NOT NULL DO NOTHING
    RETURNING *
){_history_and_event("NULL::text", "m.state", "'submitted'", "m.submitted_by", ":subject", _TRACED)}
"""
SUBMIT_SQL: Final = _SUBMIT_SQL + "SELECT m.id, m.client_key, m.state, m.generation FROM moved m"
SUBMIT_FULL_SQL: Final = _SUBMIT_SQL + "SELECT m.* FROM moved m"  # rows as inserted

Db = AsyncConnection | Any  # a SQLAlchemy connection, or a raw asyncpg one (`direct` pool)
_TEXTS: dict[str, TextClause] = {}
_NUMBERED: dict[tuple[str, tuple[str, ...]], str] = {}


async def _rows(db: Db, sql: str, params: dict[str, Any]) -> Sequence[Any]:
    """Run `sql` (`:name` parameters) on either kind of connection; rows read as `row.name`."""
    if isinstance(db, AsyncConnection):
        clause = _TEXTS.get(sql)
        if clause is None:  # not `or`: a TextClause has no truth value
            clause = _TEXTS[sql] = text(sql)
        return (await db.execute(clause, params)).all()
    key = (sql, tuple(params))
    query = _NUMBERED.get(key) or _NUMBERED.setdefault(key, numbered(sql, key[1]))
    return [Record(row) for row in await db.fetch(query, *params.values())]


async def submit(
    db: Db,
    values: Sequence[dict[str, Any]],
    headers: dict[str, str],
    *,
    full: bool = False,
    traced: Mapping[str, dict[str, str]] | None = None,
) -> Sequence[Any]:
    """Insert tasks in the given order (FIFO); a `client_key` that exists inserts nothing.

    Each task's `submitted` event carries `headers`, or its own from `traced` (by task id).
    One statement, so it needs no transaction of its own. Returns id, client_key, state and
    generation of each inserted task, or with `full` its whole row as inserted.
    """
    rows = [
        {k: v for k, v in task.items() if v is not None} | {"ord": n}
        for n, task in enumerate(values)
    ]
    return await _rows(
        db,
        SUBMIT_FULL_SQL if full else SUBMIT_SQL,
        {
            "tasks": json.dumps(rows, default=str),
            "headers": json.dumps(headers),
            "traced": json.dumps(traced or {}),
            "subject": subjects.TASK_SUBMITTED,
        },
    )


async def insert_deps(db: Db, pairs: Sequence[tuple[str, str]]) -> None:
    if pairs:
        await _rows(
            db,
            f"INSERT INTO {SCHEMA}.task_deps (task_id, depends_on) "
            "SELECT * FROM unnest(CAST(:a AS text[]), CAST(:b AS text[]))",
            {"a": [p[0] for p in pairs], "b": [p[1] for p in pairs]},
        )


async def dependency_states(db: Db, ids: Sequence[str]) -> dict[str, TaskState]:
    """The states of the dependencies of tasks about to be submitted (in the caller's
    transaction), those that may be completing locked until it commits.

    Without the lock, a submit read its dependency as unfinished while the completion's
    transaction, not seeing the uncommitted new task, settled the dependents it knew: the task
    stayed `waiting`. `FOR SHARE` waits for a completion in flight (and then reads its result),
    or makes the completion's lock wait for this commit (its settling then sees the task).
    Waiting dependencies are not locked: they cannot complete within a submit, and locking
    them too could deadlock with a completion that locks them as its dependents.
    """
    if not ids:
        return {}
    await _rows(
        db,
        f"SELECT id FROM {SCHEMA}.tasks WHERE id = ANY(CAST(:ids AS text[])) "
        "AND state <> 'waiting' ORDER BY id FOR SHARE",
        {"ids": list(ids)},
    )
    rows = await _rows(
        db,
        f"SELECT id, state FROM {SCHEMA}.tasks WHERE id = ANY(CAST(:ids AS text[]))",
        {"ids": list(ids)},
    )
    return {row.id: S(row.state) for row in rows}


async def by_keys(db: Db, keys: Sequence[str]) -> dict[str, Any]:
    if not keys:
        return {}
    rows = await _rows(
        db,
        f"SELECT id, client_key, state, generation FROM {SCHEMA}.tasks "
        "WHERE client_key = ANY(CAST(:keys AS text[])) AND client_key IS NOT NULL",
        {"keys": list(keys)},
    )
    return {row.client_key: row for row in rows}


async def fetch_many(db: Db, ids: Sequence[str]) -> dict[str, Any]:
    """Whole task rows by id."""
    rows = await _rows(
        db, f"SELECT * FROM {SCHEMA}.tasks WHERE id = ANY(CAST(:ids AS text[]))", {"ids": list(ids)}
    )
    return {row.id: row for row in rows}


LOCK_SQL: Final = f"""
SELECT id, state, generation, assigned_to, retry_count FROM {SCHEMA}.tasks
WHERE id = ANY(CAST(:ids AS text[])) ORDER BY id FOR UPDATE
"""
LOCK: Final[TextClause] = text(LOCK_SQL)
LOCK_ASYNCPG: Final = numbered(LOCK_SQL, ("ids",))


async def lock(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, Row[Any]]:
    """Lock the tasks (in id order: two batches never deadlock) and read their fencing state."""
    rows = await conn.execute(LOCK, {"ids": list(ids)})
    return {row.id: row for row in rows}


# the (from, to) pairs a report may make, straight from the state machine
REPORT_MOVES: Final = tuple(
    (source, target)
    for target in (S.WORKING, S.COMPLETED, S.PARTIAL_PASS, S.FAILED)
    for source in sorted(states.sources(target))
    if source in states.ACTIVE
)
_PAIRS: Final = ", ".join(f"('{s.value}', '{t.value}')" for s, t in REPORT_MOVES)

REPORT_SQL: Final = f"""
WITH input AS (
    SELECT * FROM jsonb_to_recordset(CAST(:reports AS jsonb)) AS i(
        task_id text, agent_id text, generation int, source text, target text, reason text,
        subject text, result jsonb, last_error text)
), moved AS (
    UPDATE {SCHEMA}.tasks t
    SET state = i.target, updated_at = now(), result = i.result,
        last_error = CASE WHEN i.target = 'failed' THEN i.last_error ELSE t.last_error END
    FROM input i
    WHERE t.id = i.task_id AND t.generation = i.generation AND t.state = i.source
      AND t.assigned_to = i.agent_id AND (i.source, i.target) IN ({_PAIRS})
    RETURNING t.id, t.state, t.generation, t.retry_count, t.max_retries, t.lane, t.seq,
              t.goal_id, t.assigned_at, t.result, i.source, i.reason, i.subject, i.agent_id,
              EXISTS (SELECT 1 FROM {SCHEMA}.task_deps d WHERE d.depends_on = t.id)
                  AS has_dependents
), hist AS (
    INSERT INTO {SCHEMA}.task_history (task_id, from_state, to_state, generation, reason, actor)
    SELECT m.id, m.source, m.state, m.generation, m.reason, m.agent_id FROM moved m
), ev AS (
    INSERT INTO {SCHEMA}.outbox (subject, payload, headers)
    SELECT m.subject,
           {_event("m.id", "m.source", "m.state", "m.generation", "m.reason", "m.agent_id", _RISK_TIER)},
           CAST(:headers AS json)
    FROM moved m ORDER BY m.id
)
SELECT m.* FROM moved m
"""
REPORT: Final[TextClause] = text(REPORT_SQL)
REPORT_ASYNCPG: Final = numbered(REPORT_SQL, ("reports", "headers"))


async def report(
    conn: AsyncConnection, moves: Sequence[dict[str, Any]], headers: dict[str, str]
) -> Sequence[Row[Any]]:
    """Apply reports already checked against `lock`'s rows; the guards are repeated in SQL."""
    if not moves:
        return []
    result = await conn.execute(
        REPORT, {"reports": json.dumps(moves), "headers": json.dumps(headers)}
    )
    return result.all()


async def lock_direct(driver: Any, ids: Sequence[str]) -> dict[str, Record]:
    """`lock` on a raw asyncpg connection (inside the caller's transaction)."""
    return {row["id"]: Record(row) for row in await driver.fetch(LOCK_ASYNCPG, list(ids))}


async def report_direct(
    driver: Any, moves: Sequence[dict[str, Any]], headers: dict[str, str]
) -> list[Record]:
    """`report` on a raw asyncpg connection (inside the caller's transaction)."""
    if not moves:
        return []
    rows = await driver.fetch(REPORT_ASYNCPG, json.dumps(moves), json.dumps(headers))
    return [Record(row) for row in rows]


FETCH_ASYNCPG: Final = f"SELECT * FROM {SCHEMA}.tasks WHERE id = $1"


async def fetch_direct(driver: Any, task_id: str) -> Record:
    """The whole task row on a raw asyncpg connection (the caller holds its lock)."""
    return Record(await driver.fetchrow(FETCH_ASYNCPG, task_id))


# dependencies -----------------------------------------------------------------------------
# One place decides what a dependency's outcome does to its waiting dependents, on every path
# (single and batch reports on either connection kind, cancel, retry, accept, the sweep).
#
# Why two statements: under READ COMMITTED, two transactions that each complete one dependency
# of the same task each saw the other's dependency unfinished (its update was not committed),
# and neither released the task. `DEPENDENTS_LOCK` locks the waiting dependents first, in id
# order, so the second transaction waits for the first to commit; `SETTLE` is a later
# statement with a fresh snapshot, which sees the first one's completion. (One statement would
# not do: a row lock re-checks only the locked row, its subqueries keep the old snapshot.)

_BLOCKING_STATES: Final = ", ".join(f"'{s.value}'" for s in states.BLOCKING)
_WHEN: Final = " ".join(
    "WHEN '{}' THEN '{}'".format(s.value, phrase.replace("'", "''"))
    for s, phrase in states.BLOCKING.items()
)
_BLOCKED_REASON: Final = (
    f"(SELECT 'dependency ' || p.id || ' ' || CASE p.state {_WHEN}"
    + f""" END
    FROM {SCHEMA}.task_deps d JOIN {SCHEMA}.tasks p ON p.id = d.depends_on
    WHERE d.task_id = t.id AND p.state IN ({_BLOCKING_STATES}) ORDER BY p.id LIMIT 1)"""
)  # the same text as `states.blocked_reason` for the first blocking dependency (by id)
_ALL_MET: Final = f"""NOT EXISTS (
    SELECT 1 FROM {SCHEMA}.task_deps d JOIN {SCHEMA}.tasks p ON p.id = d.depends_on
    WHERE d.task_id = t.id AND p.state <> 'completed')"""

DEPENDENTS_LOCK_SQL: Final = f"""
SELECT t.id FROM {SCHEMA}.tasks t
WHERE t.state = 'waiting' AND t.id IN (
    SELECT d.task_id FROM {SCHEMA}.task_deps d WHERE d.depends_on = ANY(CAST(:ids AS text[])))
ORDER BY t.id FOR UPDATE OF t
"""

# waiting tasks the sweep has to act on: every dependency completed, or a blocked_reason that
# does not say what holds them now; a task another transaction holds is its business
SWEEP_LOCK_SQL: Final = f"""
SELECT t.id FROM {SCHEMA}.tasks t
WHERE t.state = 'waiting'
  AND ({_ALL_MET} OR t.blocked_reason IS DISTINCT FROM {_BLOCKED_REASON})
ORDER BY t.id LIMIT :limit FOR UPDATE OF t SKIP LOCKED
"""

SETTLE_SQL: Final = f"""
WITH kid AS (
    SELECT t.id, {_ALL_MET} AS met, {_BLOCKED_REASON} AS blocked,
           COALESCE('dependency ' || (
               SELECT min(d.depends_on) FROM {SCHEMA}.task_deps d
               WHERE d.task_id = t.id AND d.depends_on = ANY(CAST(:done AS text[]))
           ) || ' completed', :reason) AS why
    FROM {SCHEMA}.tasks t
    WHERE t.id = ANY(CAST(:ids AS text[])) AND t.state = 'waiting'
), marked AS (
    UPDATE {SCHEMA}.tasks t SET blocked_reason = kid.blocked, updated_at = now()
    FROM kid
    WHERE t.id = kid.id AND NOT kid.met AND t.blocked_reason IS DISTINCT FROM kid.blocked
    RETURNING t.id
), moved AS (
    UPDATE {SCHEMA}.tasks t SET state = 'queued', blocked_reason = NULL, updated_at = now()
    FROM kid WHERE t.id = kid.id AND kid.met AND t.state = 'waiting'
    RETURNING t.*, kid.why
){_history_and_event("'waiting'", "'queued'", "m.why", "'queue'", ":subject")}
SELECT (SELECT count(*) FROM moved) AS released, (SELECT count(*) FROM marked) AS marked
"""


async def settle(
    db: Db, dependents: Sequence[str], done: Sequence[str], reason: str, headers: dict[str, str]
) -> tuple[int, int]:
    """Release the waiting `dependents` (locked by the caller) whose dependencies all
    completed, and set every other one's `blocked_reason` to what holds it now (None when
    nothing does). The release's history reason names the dependency of `done` that completed,
    else it is `reason`. Returns (released, reasons changed)."""
    if not dependents:
        return 0, 0
    row = (
        await _rows(
            db,
            SETTLE_SQL,
            {
                "ids": list(dependents),
                "done": list(done),
                "reason": reason,
                "headers": json.dumps(headers),
                "subject": subjects.TASK_RELEASED,
            },
        )
    )[0]
    return int(row.released), int(row.marked)


async def settle_dependents(db: Db, ids: Sequence[str], headers: dict[str, str]) -> int:
    """After the tasks `ids` changed state (in this transaction): lock their waiting dependents
    and settle them. Returns how many were released."""
    locked = await _rows(db, DEPENDENTS_LOCK_SQL, {"ids": list(ids)})
    released, _ = await settle(db, [r.id for r in locked], ids, "dependencies completed", headers)
    return released


async def sweep_dependents(db: Db, limit: int, headers: dict[str, str]) -> tuple[int, int, int]:
    """The sweep's pass over up to `limit` waiting tasks that need settling (in the caller's
    transaction). Returns (looked at, released, reasons changed)."""
    locked = [r.id for r in await _rows(db, SWEEP_LOCK_SQL, {"limit": limit})]
    released, marked = await settle(db, locked, [], "every dependency completed (sweep)", headers)
    return len(locked), released, marked
