"""HTTP API of the queue: /api/tasks and /api/repos. Parse, call ops, answer."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status
from pydantic import Field

from agentcom_common import service
from agentcom_common.contracts.base import Contract, Request as RequestBody
from agentcom_common.contracts.task import Lane, SubmitTask, TaskState, TaskTransition, TaskView
from agentcom_common.errors import ForbiddenError, NotFoundError
from agentcom_common.openapi import errors
from agentcom_common.service import Resources
from agentcom_common.web import Admin, Reader, Viewer, check_owned
from agentcom_queue import limits, ops, waiting


def own(request: Request) -> ops.Own:
    return service.own(request, ops.Own)


def queue(request: Request) -> ops.Queue:
    return own(request).q  # the app's one `Queue`, shared with its NATS handlers


Own = Annotated[ops.Own, Depends(own)]
Q = Annotated[ops.Queue, Depends(queue)]
CURSOR = r"^[0-9]{1,18}$"  # a `next_cursor`: a task's `seq`, which stays within a bigint
tasks = APIRouter(prefix="/api/tasks", tags=["tasks"])
repos = APIRouter(prefix="/api/repos", tags=["repos"])


class TaskPage(Contract):
    tasks: list[TaskView]
    next_cursor: str | None


class Stats(Contract):
    by_state: dict[str, int]
    queued_by_lane: dict[str, int]


@tasks.post("", status_code=status.HTTP_201_CREATED, responses=errors(409))
async def submit_task(body: SubmitTask, own: Own, who: Admin) -> TaskView:
    """Submit a task. With `client_key`, a repeat returns the first task instead of a new one.

    Errors: 413 `body_too_large` / `task_too_large` (names the limit), 422 `invalid_field`
    (names the field), 409 `unknown_dependencies`, 503 `db_unavailable` (with `Retry-After`).
    """
    limits.check_task(body, own.task_limit)
    return await own.submit(body, who.name)


@tasks.get("")
async def list_tasks(
    q: Q,
    who: Reader,
    state: TaskState | None = None,
    priority: Lane | None = None,
    goal_id: Annotated[str | None, Query(max_length=64)] = None,
    assigned_to: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[str | None, Query(pattern=CURSOR)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> TaskPage:
    """List tasks newest first, filtered; pass `next_cursor` back as `cursor` for the next page.

    An agent token lists only the tasks assigned to its agent. Errors: 403 `forbidden`
    (an agent token asking for another agent's tasks).
    """
    if who.agent_id is not None:
        if assigned_to not in (None, who.agent_id):
            raise ForbiddenError(
                f"assigned_to: an agent token lists only its own tasks "
                f"(assigned_to={who.agent_id}), not {assigned_to}'s",
                field="assigned_to",
            )
        assigned_to = who.agent_id
    found, next_cursor = await ops.page(
        q,
        state=state,
        priority=priority,
        goal_id=goal_id,
        assigned_to=assigned_to,
        cursor=cursor,
        limit=limit,
    )
    return TaskPage(tasks=found, next_cursor=next_cursor)


@tasks.get("/stats")
async def task_stats(q: Q, _who: Viewer) -> Stats:
    """Count tasks by state, and queued tasks by lane."""
    by_state, by_lane = await ops.stats(q)
    return Stats(by_state=by_state, queued_by_lane=by_lane)


@tasks.get("/dead-letter")
async def dead_letter(
    q: Q,
    _who: Viewer,
    cursor: Annotated[str | None, Query(pattern=CURSOR)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> TaskPage:
    """List dead-lettered tasks (kept for inspection and retry), newest first."""
    found, next_cursor = await ops.page(
        q,
        state=TaskState.DEAD_LETTER,
        priority=None,
        goal_id=None,
        assigned_to=None,
        cursor=cursor,
        limit=limit,
    )
    return TaskPage(tasks=found, next_cursor=next_cursor)


@tasks.get("/{task_id}", responses=errors(404))
async def get_task(task_id: str, q: Q, who: Reader, request: Request) -> TaskView:
    """Get one task; a queued one says why no agent is taking it (`waiting_reason`).

    Errors: 404 `task_not_found` (also to an agent token for a task not assigned to it).
    """
    if who.agent_id is not None:
        check_owned(who, (await ops.get(q, task_id)).assigned_to, _not_yours(task_id, who.agent_id))
    res: Resources = request.app.state.resources
    return await waiting.get(q, res.nc, task_id, own(request).explain_timeout)


@tasks.get("/{task_id}/history", responses=errors(404))
async def task_history(task_id: str, q: Q, who: Reader) -> list[TaskTransition]:
    """Every state change of a task with reason, actor and generation.

    Errors: 404 `task_not_found` (also to an agent token for a task not assigned to it).
    """
    if who.agent_id is not None:
        check_owned(who, (await ops.get(q, task_id)).assigned_to, _not_yours(task_id, who.agent_id))
    return await ops.history(q, task_id)


def _not_yours(task_id: str, agent_id: str) -> NotFoundError:
    return NotFoundError(
        f"no task {task_id} assigned to agent {agent_id}; an agent token reads only its own tasks",
        code="task_not_found",
    )


@tasks.post("/{task_id}/cancel", responses=errors(404, 409))
async def cancel_task(task_id: str, q: Q, who: Admin) -> TaskView:
    """Cancel a task that has not ended (idempotent); dependents are marked blocked.

    Errors: 404 `task_not_found`, 409 `invalid_transition` (already ended).
    """
    return await ops.cancel(q, task_id, who.name)


@tasks.post("/{task_id}/retry", responses=errors(404, 409))
async def retry_task(task_id: str, q: Q, who: Admin) -> TaskView:
    """Put a dead-lettered or partial_pass task back in its lane with a fresh retry budget;
    the dependents it blocked wait for it again (or show what else blocks them).

    Errors: 404 `task_not_found`, 409 `invalid_transition` (neither dead-lettered nor
    partial_pass).
    """
    return await ops.retry_dead_letter(q, task_id, who.name)


@tasks.post("/{task_id}/accept", responses=errors(404, 409))
async def accept_task(task_id: str, q: Q, who: Admin) -> TaskView:
    """Accept a partial_pass task's result as its completion: it becomes `completed` and the
    dependents it blocked are released (unless another dependency holds them). Accepting a
    completed task again changes nothing.
    """
    return await ops.accept(q, task_id, who.name)


class RepoUrl(RequestBody):
    url: str = Field(min_length=1, max_length=500)


class RepoPause(RepoUrl):
    paused: bool


class RepoOrder(RequestBody):
    order: list[Annotated[str, Field(min_length=1, max_length=500)]] = Field(max_length=500)


Repos = list[dict[str, Any]]


@repos.get("")
async def list_repos(q: Q, _who: Viewer) -> Repos:
    """Registered repos in priority order; a task without a repo inherits the first active one."""
    return await ops.list_repos(q)


@repos.post("", status_code=status.HTTP_201_CREATED)
async def add_repo(body: RepoUrl, q: Q, who: Admin) -> Repos:
    """Register a repo at the end of the list (idempotent). URLs are trimmed of `/` and `.git`."""
    return await ops.add_repo(q, body.url, who.name)


@repos.post("/remove", responses=errors(404))
async def remove_repo(body: RepoUrl, q: Q, _who: Admin) -> Repos:
    """Remove a repo. Errors: 404 `repo_not_found`."""
    return await ops.remove_repo(q, body.url)


@repos.post("/pause", responses=errors(404))
async def pause_repo(body: RepoPause, q: Q, _who: Admin) -> Repos:
    """Pause or resume a repo: claims skip tasks of a paused repo. Errors: 404."""
    return await ops.pause_repo(q, body.url, body.paused)


@repos.put("/order", responses=errors(409))
async def reorder_repos(body: RepoOrder, q: Q, _who: Admin) -> Repos:
    """Set the priority order; must list every registered repo once.

    Errors: 409 `order_mismatch` (naming `order`: not every registered repo once)."""
    return await ops.reorder_repos(q, body.order)
