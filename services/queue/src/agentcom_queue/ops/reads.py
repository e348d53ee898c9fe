"""Reading tasks: one, its history, a page, the counts."""

from typing import Final

from agentcom_common.contracts.task import (
    LANE_ORDER,
    Lane,
    TaskState,
    TaskTransition,
    TaskView,
)
from agentcom_common.errors import (
    InvalidError,
    NotFoundError,
)
from agentcom_queue import store
from agentcom_queue.ops.core import Queue, S, view, views


async def get(q: Queue, task_id: str) -> TaskView:
    async with q.engine.connect() as conn:
        row = await store.fetch(conn, task_id)
    if row is None:
        raise NotFoundError(f"no task {task_id}", code="task_not_found")
    return view(row)


async def history(q: Queue, task_id: str) -> list[TaskTransition]:
    async with q.engine.connect() as conn:
        task = await store.fetch(conn, task_id)
        if task is None:
            raise NotFoundError(f"no task {task_id}", code="task_not_found")
        rows = await store.history(conn, task_id)
    return [
        TaskTransition(
            task_id=r.task_id,
            from_state=S(r.from_state) if r.from_state else None,
            to_state=S(r.to_state),
            generation=r.generation,
            reason=r.reason,
            actor=r.actor,
            at=r.at,
            goal_id=task.goal_id,  # set at submit, never changed
        )
        for r in rows
    ]


async def page(
    q: Queue,
    *,
    state: TaskState | None,
    priority: Lane | None,
    goal_id: str | None,
    assigned_to: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[TaskView], str | None]:
    """One page of tasks, newest first; returns the cursor of the next page (None at the end)."""
    after = _decode_cursor(cursor)
    async with q.engine.connect() as conn:
        rows = await store.page(
            conn,
            state=state,
            lane=LANE_ORDER[priority] if priority else None,
            goal_id=goal_id,
            assigned_to=assigned_to,
            after_seq=after,
            limit=limit + 1,
        )
    more = len(rows) > limit
    rows = rows[:limit]
    return views(rows), (str(rows[-1].seq) if more and rows else None)


def _decode_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    # ASCII digits only ("³" is a digit to str.isdigit), and within the bigint `seq` it names
    if not (cursor.isascii() and cursor.isdigit()) or int(cursor) > _MAX_SEQ:
        raise InvalidError("cursor must be the `next_cursor` of a previous page", field="cursor")
    return int(cursor)


_MAX_SEQ: Final = 2**63 - 1


async def stats(q: Queue) -> tuple[dict[str, int], dict[str, int]]:
    async with q.engine.connect() as conn:
        by_state, by_lane = await store.count_by(conn)
    return (
        {s.value: by_state.get(s.value, 0) for s in S},
        {lane.value: by_lane.get(rank, 0) for lane, rank in LANE_ORDER.items()},
    )
