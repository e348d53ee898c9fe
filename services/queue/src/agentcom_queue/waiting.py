"""Why a queued task is not being taken, for `GET /api/tasks/{id}` (`waiting_reason`).

What the queue knows it says itself: a retry's backoff (`not_before`), a paused repo. What it
does not (which agents are online, what they have, serve and refused for good) the scheduler
answers over `agentcom.rpc.scheduler.explain`: the queue never reads the scheduler's tables.
Asked on read only, so a claim never pays for it; a scheduler that does not answer within
`AGENTCOM_QUEUE_EXPLAIN_TIMEOUT` is the reason given.
"""

from datetime import timedelta

from nats.aio.client import Client

from agentcom_common import clock, micro
from agentcom_common.contracts.task import ExplainWait, TaskState, TaskView, WaitReason
from agentcom_common.errors import AgentcomError, NotFoundError, UnavailableError
from agentcom_queue import ops, store


async def get(q: ops.Queue, nc: Client, task_id: str, timeout: timedelta) -> TaskView:
    """The task as `ops.get` shows it; a queued one with its `waiting_reason`."""
    async with q.engine.connect() as conn:
        row = await store.fetch(conn, task_id)
        if row is None:
            raise NotFoundError(f"no task {task_id}", code="task_not_found")
        paused = row.repo is not None and await store.repo_paused(conn, row.repo)
    task = ops.view(row)
    if task.state is not TaskState.QUEUED:
        return task
    if row.not_before > clock.now():
        reason: str | None = f"retry backoff: offered again from {row.not_before.isoformat()}"
    elif paused:
        reason = f"repo {row.repo} is paused (POST /api/repos/pause)"
    else:
        reason = await _ask_scheduler(nc, task, timeout)
    return task.model_copy(update={"waiting_reason": reason})


async def _ask_scheduler(nc: Client, task: TaskView, timeout: timedelta) -> str | None:
    ask = ExplainWait(task_id=task.id, needed_capabilities=task.needed_capabilities, repo=task.repo)
    try:
        said = await micro.call(
            nc, "scheduler", "explain", ask, WaitReason, timeout=timeout.total_seconds()
        )
    except UnavailableError:
        return "the scheduler did not answer (it matches tasks to agents): is it running?"
    except AgentcomError as exc:
        return f"the scheduler could not say ({exc.code})"
    return said.reason
