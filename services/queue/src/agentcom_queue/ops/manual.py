"""What a person (or the hub) does to a task: cancel it, retry a dead-lettered or partial
one, accept a partial result.
"""

from agentcom_common import clock
from agentcom_common.contracts.task import (
    TaskView,
)
from agentcom_common.errors import (
    InvalidTransitionError,
    NotFoundError,
    TransitionRefusedError,
)
from agentcom_queue import meters, states, store
from agentcom_queue.ops.core import Queue, S, move_task, view
from agentcom_queue.ops.dependents import settle_dependents


async def cancel(q: Queue, task_id: str, actor: str) -> TaskView:
    """Cancel a task that has not ended. The record is kept; cancelling twice is a no-op."""
    async with q.engine.begin() as conn:
        row = await store.fetch(conn, task_id, lock=True)
        if row is None:
            raise NotFoundError(f"no task {task_id}", code="task_not_found")
        if row.state == S.CANCELLED.value:
            return view(row)
        if S(row.state) not in states.CANCELLABLE:
            raise InvalidTransitionError(
                f"task {task_id} is {row.state}; only "
                f"{', '.join(sorted(states.CANCELLABLE))} tasks can be cancelled"
            )
        row = await move_task(q, conn, task_id, S.CANCELLED, reason="cancelled", actor=actor)
        await settle_dependents(conn, [row])
    meters.count_ended([row])
    return view(row)


async def retry_dead_letter(q: Queue, task_id: str, actor: str) -> TaskView:
    """Put a dead-lettered or partial_pass task back in its lane with a fresh retry budget.

    Its waiting dependents lose the `blocked_reason` it gave them; one that another
    dependency still holds shows that one instead."""
    async with q.engine.begin() as conn:
        try:
            row = await move_task(
                q,
                conn,
                task_id,
                S.QUEUED,
                reason="retried by hand",
                actor=actor,
                values={
                    "retry_count": 0,
                    "assigned_to": None,
                    "seq": store.next_seq(),
                    "not_before": clock.now(),
                },
                sources=states.RETRYABLE,
            )
        except TransitionRefusedError:
            if await store.fetch(conn, task_id) is None:
                raise NotFoundError(f"no task {task_id}", code="task_not_found") from None
            raise InvalidTransitionError(
                f"task {task_id} is neither dead-lettered nor partial_pass; only those can be "
                "retried"
            ) from None
        await settle_dependents(conn, [row])
    return view(row)


async def accept(q: Queue, task_id: str, actor: str) -> TaskView:
    """Accept a partial_pass task's result as its completion: it becomes `completed`, and the
    dependents it held are released (or blocked by what else holds them). Accepting a
    completed task changes nothing."""
    async with q.engine.begin() as conn:
        row = await store.fetch(conn, task_id, lock=True)
        if row is None:
            raise NotFoundError(f"no task {task_id}", code="task_not_found")
        if row.state == S.COMPLETED.value:
            return view(row)
        if row.state != S.PARTIAL_PASS.value:
            raise InvalidTransitionError(
                f"task {task_id} is {row.state}; only a partial_pass task's result can be accepted"
            )
        row = await move_task(
            q,
            conn,
            task_id,
            S.COMPLETED,
            reason="partial result accepted",
            actor=actor,
            sources=frozenset({S.PARTIAL_PASS}),
        )
        await settle_dependents(conn, [row])
    return view(row)
