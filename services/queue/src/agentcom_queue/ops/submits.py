"""Submitting tasks: one, many in one transaction, and the group commit of concurrent single
submits.
"""

import asyncio
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from sqlalchemy.ext.asyncio import AsyncConnection

from agentcom_common import task_traces, telemetry
from agentcom_common.contracts.task import (
    LANE_ORDER,
    SubmitTask,
    TaskRef,
    TaskState,
    TaskView,
)
from agentcom_common.errors import (
    ConflictError,
    InvalidError,
)
from agentcom_queue import complexity, meters, states, store, store_batch
from agentcom_queue.ops.core import (
    Queue,
    S,
    clone_url,
    emit,
    normalize_repo,
    view,
)


async def submit(q: Queue, task: SubmitTask, actor: str) -> TaskView:
    """Create a task. Idempotency key: `client_key` (the same key returns the same task)."""
    deps = list(dict.fromkeys(task.depends_on))
    if len(deps) != len(task.depends_on):
        raise InvalidError("depends_on lists a task twice", field="depends_on")
    async with q.engine.begin() as conn:
        if task.client_key and (existing := await store.fetch_by_key(conn, task.client_key)):
            return view(existing)
        known = await store_batch.dependency_states(conn, deps)
        if unknown := [d for d in deps if d not in known]:
            # well-formed, but naming tasks that do not exist now: the state refuses it (409)
            raise ConflictError(
                f"depends_on names unknown tasks: {', '.join(unknown)}",
                code="unknown_dependencies",
                field="depends_on",
            )
        row = await store.insert_task(conn, _values(task, deps, known, actor))
        if row is None:  # a concurrent submit with the same key won
            existing = await store.fetch_by_key(conn, task.client_key or "")
            assert existing is not None
            return view(existing)
        row = await _with_repo(conn, row, task)
        await store.insert_deps(conn, row.id, deps)
        await store.record_creation(conn, row, actor)
        await emit(q, conn, row, None, "submitted", actor)
    meters.count_submitted([row.lane])
    task_traces.record_root(row.id, "task submit", __name__)
    return view(row)


async def _with_repo(conn: AsyncConnection, row: store.TaskRow, task: SubmitTask) -> store.TaskRow:
    if task.repo is not None:
        return row
    inherited = await store.top_active_repo(conn)
    if inherited is None:
        return row
    key, url = inherited
    return await store.set_fields(conn, row.id, {"repo": key, "repo_url": url or key})


def _values(
    task: SubmitTask, deps: list[str], known: Mapping[str, TaskState], actor: str
) -> dict[str, Any]:
    """The row of a new task; `known` holds the states of its dependencies."""
    met = all(known[d] is S.COMPLETED for d in deps)
    blocking = sorted(d for d in deps if known[d] in states.BLOCKING)
    return {
        "id": f"task-{secrets.token_hex(8)}",
        "client_key": task.client_key,
        "state": (S.QUEUED if met else S.WAITING).value,
        "lane": LANE_ORDER[task.priority],
        "description": task.description,
        "max_retries": task.max_retries,
        "complete_by": task.complete_by,
        "needed_capabilities": list(task.needed_capabilities),
        "repo": normalize_repo(task.repo),
        "repo_url": clone_url(task.repo),
        "branch": task.branch,
        "file_hints": [h.model_dump(mode="json") for h in task.file_hints],
        "success_criteria": list(task.success_criteria),
        "verification_steps": [s.model_dump(mode="json") for s in task.verification_steps],
        "complexity": complexity.classify_json(task),
        "depends_on": deps,
        "goal_id": task.goal_id,
        "metadata": task.metadata,
        "submitted_by": actor,
        "blocked_reason": states.blocked_reason(blocking[0], known[blocking[0]])
        if blocking
        else None,
    }


async def submit_many(q: Queue, tasks: list[SubmitTask], actor: str) -> list[TaskRef]:
    """Create many tasks in one transaction, in order; each is validated as `submit` validates.

    A `client_key` that exists (or repeats inside the batch) returns the task it names.
    """
    rows = await _submit_rows(q, tasks, actor, full=False)
    # built from our own rows (str, enum, int): no validation needed
    return [
        TaskRef.model_construct(id=row.id, state=S(row.state), generation=row.generation)
        for row in rows
    ]


async def _submit_rows(
    q: Queue,
    tasks: list[SubmitTask],
    actor: str,
    *,
    full: bool,
    causes: Sequence[Context] | None = None,
) -> list[Any]:
    """`submit_many`'s work: one row per task in order (id, client_key, state, generation; with
    `full`, the whole task row, read in the same transaction). `causes`, one per task, are the
    trace contexts of the requests that submitted them (a group commit's several callers);
    without them every task has the current one."""
    deps_of: list[list[str]] = []
    for n, task in enumerate(tasks):
        deps = list(dict.fromkeys(task.depends_on))
        if len(deps) != len(task.depends_on):
            raise InvalidError("depends_on lists a task twice", field=f"tasks.{n}.depends_on")
        deps_of.append(deps)
    one_statement = not any(t.client_key for t in tasks) and not any(deps_of)
    if q.claims is not None and one_statement:
        # no keys to look up and no dependencies to check or record: the insert statement is
        # all the work, and one statement is atomic without BEGIN/COMMIT round trips
        async with q.claims.acquire() as driver:
            rows = await _submit_in(driver, tasks, deps_of, actor, full=full, causes=causes)
    elif q.claims is not None:  # the raw asyncpg pool: no pre-ping, no statement building
        async with q.claims.acquire() as driver, driver.transaction():
            rows = await _submit_in(driver, tasks, deps_of, actor, full=full, causes=causes)
    else:
        async with q.engine.begin() as conn:
            rows = await _submit_in(conn, tasks, deps_of, actor, full=full, causes=causes)
    q.relay.wake()
    return rows


async def _submit_in(
    conn: store_batch.Db,
    tasks: list[SubmitTask],
    deps_of: list[list[str]],
    actor: str,
    *,
    full: bool,
    causes: Sequence[Context] | None,
) -> list[Any]:
    """`_submit_rows` inside its transaction, on either kind of connection."""
    keys = [t.client_key for t in tasks if t.client_key]
    by_key = await store_batch.by_keys(conn, keys)
    known = await store_batch.dependency_states(conn, sorted({d for deps in deps_of for d in deps}))
    plan: list[str | dict[str, Any]] = []  # per task: the client_key it returns, or its row
    cause_of: dict[str, Context] = {}  # a new task's id -> the trace context that submitted it
    taken = set(by_key)
    for n, (task, deps) in enumerate(zip(tasks, deps_of, strict=True)):
        if task.client_key and task.client_key in taken:
            plan.append(task.client_key)
            continue
        if unknown := [d for d in deps if d not in known]:
            # well-formed, but naming tasks that do not exist now: the state refuses it (409)
            raise ConflictError(
                f"depends_on names unknown tasks: {', '.join(unknown)}",
                code="unknown_dependencies",
                field=f"tasks.{n}.depends_on",
            )
        values = _values(task, deps, known, actor)  # no repo: the statement inherits
        plan.append(values)
        if causes is not None:
            cause_of[values["id"]] = causes[n]
        if task.client_key:
            taken.add(task.client_key)
    new = [p for p in plan if isinstance(p, dict)]
    traced = {task_id: telemetry.inject_headers(context=c) for task_id, c in cause_of.items()}
    inserted = {
        r.id: r
        for r in await store_batch.submit(
            conn, new, telemetry.inject_headers(), full=full, traced=traced
        )
    }
    await store_batch.insert_deps(
        conn, [(v["id"], d) for v in new if v["id"] in inserted for d in v["depends_on"]]
    )
    # counted before the commit: a commit that then fails (rare) over-counts its batch
    meters.count_submitted(v["lane"] for v in new if v["id"] in inserted)
    # each task's trace starts here (`task_traces`)
    task_traces.record_roots(((t, cause_of.get(t)) for t in inserted), "task submit", __name__)
    by_key |= {r.client_key: r for r in inserted.values() if r.client_key}
    if lost := [v["client_key"] for v in new if v["id"] not in inserted]:
        by_key |= await store_batch.by_keys(conn, lost)  # a concurrent submit won the key
    rows = [
        by_key[p] if isinstance(p, str) else inserted.get(p["id"]) or by_key[p["client_key"]]
        for p in plan
    ]
    if full and (earlier := [p for p in plan if isinstance(p, str) or p["id"] not in inserted]):
        # tasks named by an existing client_key: read whole, in this transaction
        ids = [by_key[p if isinstance(p, str) else p["client_key"]].id for p in earlier]
        whole = await store_batch.fetch_many(conn, ids)
        rows = [whole.get(row.id, row) for row in rows]
    return rows


@dataclass(frozen=True, slots=True)
class _Member:
    """One caller waiting in a `SubmitGroup`: its task, its answer and its trace context."""

    q: Queue
    task: SubmitTask
    actor: str
    answer: asyncio.Future[TaskView]
    cause: Context


class SubmitGroup:
    """Group commit of single submits: those that arrive within one turn of the event loop
    share one `submit_many` transaction (one prebuilt statement for all of them, one commit).

    Each caller still gets its own answer: if the shared transaction fails for any reason
    (one task's unknown dependency, say), every task of the group is submitted again on its
    own by `submit`, so one bad task fails only its own caller, with its own error.
    """

    def __init__(self) -> None:
        self._waiting: list[_Member] = []
        self._flushes: set[asyncio.Task[None]] = set()

    async def submit(self, q: Queue, task: SubmitTask, actor: str) -> TaskView:
        """Submit `task` as `submit` would, together with the others of this loop turn."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[TaskView] = loop.create_future()
        # the flush runs in the first caller's context: each task keeps its own caller's
        self._waiting.append(_Member(q, task, actor, answer, otel_context.get_current()))
        if len(self._waiting) == 1:  # the first of this turn schedules the flush
            flush = loop.create_task(self._flush())
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)
        return await answer

    async def _flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        groups: dict[tuple[int, str], list[_Member]] = {}
        for member in waiting:
            groups.setdefault((id(member.q.engine), member.actor), []).append(member)
        await asyncio.gather(*(self._commit(members) for members in groups.values()))

    async def _commit(self, members: list[_Member]) -> None:
        q, actor = members[0].q, members[0].actor
        try:
            rows = await _submit_rows(
                q, [m.task for m in members], actor, full=True, causes=[m.cause for m in members]
            )
        except Exception:  # noqa: BLE001 - each task gets its own answer below
            rows = None
        for n, member in enumerate(members):
            if member.answer.done():  # the caller went away (cancelled)
                continue
            if rows is not None:
                member.answer.set_result(view(rows[n]))
                continue
            token = otel_context.attach(member.cause)
            try:
                member.answer.set_result(await submit(member.q, member.task, actor))
            except Exception as error:  # noqa: BLE001 - handed to its own caller
                if not member.answer.done():
                    member.answer.set_exception(error)
            finally:
                otel_context.detach(token)


@dataclass(frozen=True, slots=True)
class Own:
    """The queue's own state, built once per app (`app.build`) and shared by its routes, NATS
    handlers and sweep: the one `Queue`, the group commit of single submits, the limits."""

    q: Queue
    submits: SubmitGroup
    task_limit: int  # `queue_max_task_bytes`, lowered to what NATS can carry (`limits`)
    explain_timeout: timedelta

    async def submit(self, task: SubmitTask, actor: str) -> TaskView:
        """`submit` through the app's `SubmitGroup`: concurrent single submits commit together."""
        return await self.submits.submit(self.q, task, actor)
