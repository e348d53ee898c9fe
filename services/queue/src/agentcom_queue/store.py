"""Every SQL statement on the `queue` schema. The only importer of tables.py.

Guards live in the SQL: `move` updates only from the states `states.sources(target)` allows and
only at the expected generation, so of two racing writers exactly one UPDATE matches.
"""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, func, insert, not_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from agentcom_common.contracts.task import TaskState
from agentcom_common.errors import TransitionRefusedError
from agentcom_queue import states
from agentcom_queue.tables import repos, task_deps, task_history, tasks

TaskRow = Row[Any]


def next_seq() -> Any:
    """A fresh FIFO position: a requeued or retried task goes to the back of its lane."""
    return func.nextval(func.pg_get_serial_sequence("queue.tasks", "seq"))


async def insert_task(conn: AsyncConnection, values: dict[str, Any]) -> TaskRow | None:
    """Insert a task; None when its client_key already exists (the caller fetches that one)."""
    stmt = pg_insert(tasks).values(**values).returning(*tasks.c)
    if values.get("client_key") is not None:
        stmt = stmt.on_conflict_do_nothing(
            index_elements=[tasks.c.client_key], index_where=tasks.c.client_key.isnot(None)
        )
    return (await conn.execute(stmt)).one_or_none()


async def insert_deps(conn: AsyncConnection, task_id: str, depends_on: Sequence[str]) -> None:
    if depends_on:
        await conn.execute(
            insert(task_deps), [{"task_id": task_id, "depends_on": d} for d in depends_on]
        )


async def fetch(conn: AsyncConnection, task_id: str, *, lock: bool = False) -> TaskRow | None:
    stmt = select(tasks).where(tasks.c.id == task_id)
    if lock:
        stmt = stmt.with_for_update()
    return (await conn.execute(stmt)).one_or_none()


async def fetch_by_key(conn: AsyncConnection, client_key: str) -> TaskRow | None:
    return (await conn.execute(select(tasks).where(tasks.c.client_key == client_key))).one_or_none()


async def move(
    conn: AsyncConnection,
    task_id: str,
    to: TaskState,
    *,
    generation: int | None = None,
    reason: str,
    actor: str,
    values: dict[str, Any] | None = None,
    sources: frozenset[TaskState] | None = None,
) -> tuple[TaskState, TaskRow]:
    """Move a task along TRANSITIONS, record the history row; returns (previous state, row).

    `sources` narrows the states it may leave (a requeue only from an assignment, not from
    every state the target can be entered from)."""
    allowed = states.sources(to) if sources is None else states.sources(to) & sources
    current = (
        select(tasks.c.state).where(tasks.c.id == task_id).scalar_subquery()
    )  # the pre-update state, read inside the same statement
    stmt = (
        update(tasks)
        .where(tasks.c.id == task_id)
        .where(tasks.c.state.in_(sorted(allowed)))  # the guard that holds under races
        .values(state=to.value, updated_at=func.now(), **(values or {}))
        .returning(current.label("previous"), *tasks.c)
    )
    if generation is not None:
        stmt = stmt.where(tasks.c.generation == generation)
    row = (await conn.execute(stmt)).one_or_none()
    if row is None:
        raise TransitionRefusedError(f"task {task_id} cannot move to {to} now")
    await conn.execute(
        insert(task_history).values(
            task_id=task_id,
            from_state=row.previous,
            to_state=to.value,
            generation=row.generation,
            reason=reason,
            actor=actor,
        )
    )
    return TaskState(row.previous), row


async def record_creation(conn: AsyncConnection, row: TaskRow, actor: str) -> None:
    await conn.execute(
        insert(task_history).values(
            task_id=row.id,
            from_state=None,
            to_state=row.state,
            generation=0,
            reason="submitted",
            actor=actor,
        )
    )


async def deliveries(conn: AsyncConnection, row: TaskRow) -> int:
    """How many times the task was handed to an agent since a person last retried it: every
    claim bumps the generation, and a retry by hand (dead_letter or partial_pass -> queued)
    starts afresh."""
    stmt = select(func.max(task_history.c.generation)).where(
        task_history.c.task_id == row.id,
        task_history.c.from_state.in_(sorted(states.RETRYABLE)),
        task_history.c.to_state == TaskState.QUEUED.value,
    )
    retried_at = (await conn.execute(stmt)).scalar_one_or_none()
    return row.generation - (retried_at or 0)


async def history(conn: AsyncConnection, task_id: str) -> Sequence[Row[Any]]:
    stmt = select(task_history).where(task_history.c.task_id == task_id).order_by(task_history.c.id)
    return (await conn.execute(stmt)).all()


async def page(
    conn: AsyncConnection,
    *,
    state: TaskState | None,
    lane: int | None,
    goal_id: str | None,
    assigned_to: str | None,
    after_seq: int | None,
    limit: int,
) -> Sequence[TaskRow]:
    """Tasks newest first, `limit` at a time; the cursor is the last row's seq."""
    stmt = select(tasks).order_by(tasks.c.seq.desc()).limit(limit)
    for column, value in (
        (tasks.c.state, state.value if state else None),
        (tasks.c.lane, lane),
        (tasks.c.goal_id, goal_id),
        (tasks.c.assigned_to, assigned_to),
    ):
        if value is not None:
            stmt = stmt.where(column == value)
    if after_seq is not None:
        stmt = stmt.where(tasks.c.seq < after_seq)
    return (await conn.execute(stmt)).all()


async def count_by(conn: AsyncConnection) -> tuple[dict[str, int], dict[int, int]]:
    """Tasks by state, and queued tasks by lane, from ONE statement: two statements read two
    snapshots (read committed), and a submit committed between them was counted queued in its
    lane but not among the queued (a CI run's scrape saw exactly that)."""
    rows = await conn.execute(
        select(tasks.c.state, tasks.c.lane, func.count()).group_by(tasks.c.state, tasks.c.lane)
    )
    by_state: dict[str, int] = {}
    by_lane: dict[int, int] = {}
    for state, lane, count in rows:
        by_state[state] = by_state.get(state, 0) + count
        if state == TaskState.QUEUED.value:
            by_lane[lane] = by_lane.get(lane, 0) + count
    return by_state, by_lane


async def count_live(conn: AsyncConnection) -> dict[tuple[str, int], int]:
    """Tasks not yet ended, by state and lane (the ended ones only grow; counters count them)."""
    rows = await conn.execute(
        select(tasks.c.state, tasks.c.lane, func.count())
        .where(tasks.c.state.not_in([s.value for s in states.TERMINAL]))
        .group_by(tasks.c.state, tasks.c.lane)
    )
    return {(r[0], r[1]): r[2] for r in rows}


# repo registry ---------------------------------------------------------------------------


async def top_active_repo(conn: AsyncConnection) -> tuple[str, str | None] | None:
    """The first unpaused repo's key and the URL it was added with."""
    stmt = (
        select(repos.c.url, repos.c.clone_url)
        .where(not_(repos.c.paused))
        .order_by(repos.c.position)
        .limit(1)
    )
    row = (await conn.execute(stmt)).first()
    return None if row is None else (row.url, row.clone_url)


async def list_repos(conn: AsyncConnection) -> Sequence[Row[Any]]:
    return (await conn.execute(select(repos).order_by(repos.c.position))).all()


async def add_repo(conn: AsyncConnection, url: str, clone_url: str, added_by: str) -> bool:
    """Append the repo keyed `url` at the end; False if it is already registered."""
    last = select(func.coalesce(func.max(repos.c.position), -1) + 1).scalar_subquery()
    stmt = (
        pg_insert(repos)
        .values(url=url, clone_url=clone_url, position=last, added_by=added_by)
        .on_conflict_do_nothing(index_elements=[repos.c.url])
    )
    return (await conn.execute(stmt)).rowcount == 1


async def remove_repo(conn: AsyncConnection, url: str) -> bool:
    return (await conn.execute(repos.delete().where(repos.c.url == url))).rowcount == 1


async def set_paused(conn: AsyncConnection, url: str, paused: bool) -> bool:
    stmt = update(repos).where(repos.c.url == url).values(paused=paused)
    return (await conn.execute(stmt)).rowcount == 1


async def reorder_repos(conn: AsyncConnection, order: Sequence[str]) -> None:
    for position, url in enumerate(order):
        await conn.execute(update(repos).where(repos.c.url == url).values(position=position))


async def set_fields(conn: AsyncConnection, task_id: str, values: dict[str, Any]) -> TaskRow:
    """Change fields that are not the state (the repo a task inherits at submit)."""
    stmt = update(tasks).where(tasks.c.id == task_id).values(**values).returning(*tasks.c)
    return (await conn.execute(stmt)).one()


async def repo_paused(conn: AsyncConnection, url: str) -> bool:
    stmt = select(repos.c.paused).where(repos.c.url == url)
    return bool((await conn.execute(stmt)).scalar_one_or_none())
