"""Queue use cases, one transaction each: the change, its history rows and its events commit
together (house style 2.3). HTTP routes and NATS endpoints both call these.
"""

import asyncio
import secrets
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agentcom_common import clock, outbox, subjects, task_traces, telemetry
from agentcom_common.contracts.task import (
    LANE_ORDER,
    Lane,
    ReportOutcome,
    ReportTask,
    RequeueTask,
    SubmitTask,
    TaskRef,
    TaskState,
    TaskTransition,
    TaskView,
)
from agentcom_common.errors import (
    AgentcomError,
    ConflictError,
    ForbiddenError,
    InvalidError,
    InvalidTransitionError,
    NotFoundError,
    StaleGenerationError,
    TransitionRefusedError,
)
from agentcom_common.repos import repo_key, repo_keys
from agentcom_queue import complexity, meters, states, store, store_batch

S = TaskState
LANES = list(Lane)

# the event each transition emits (its subject)
EVENT_OF: dict[tuple[TaskState | None, TaskState], str] = {
    (S.WAITING, S.QUEUED): subjects.TASK_RELEASED,
    (S.QUEUED, S.ASSIGNED): subjects.TASK_ASSIGNED,
    (S.ASSIGNED, S.WORKING): subjects.TASK_ACCEPTED,
    (S.ASSIGNED, S.QUEUED): subjects.TASK_REQUEUED,
    (S.WORKING, S.QUEUED): subjects.TASK_REQUEUED,
    (S.FAILED, S.QUEUED): subjects.TASK_RETRIED,
    (S.DEAD_LETTER, S.QUEUED): subjects.TASK_RETRIED,
    (S.FAILED, S.DEAD_LETTER): subjects.TASK_DEAD_LETTERED,
}
_BY_TARGET = {
    S.COMPLETED: subjects.TASK_COMPLETED,
    S.PARTIAL_PASS: subjects.TASK_PARTIAL_PASS,
    S.FAILED: subjects.TASK_FAILED,
    S.CANCELLED: subjects.TASK_CANCELLED,
    S.WAITING: subjects.TASK_SUBMITTED,
    S.QUEUED: subjects.TASK_SUBMITTED,
}


def event_subject(source: TaskState | None, target: TaskState) -> str:
    return EVENT_OF.get((source, target)) or _BY_TARGET[target]


@dataclass(frozen=True, slots=True)
class Queue:
    """What the ops need: the engine, the outbox table, the retry backoff, the claim pool, the
    cap on deliveries."""

    engine: AsyncEngine
    outbox: Table
    retry_backoff: timedelta = timedelta(0)
    claims: Any = None  # an asyncpg pool for claims (`direct.ClaimPool`); None: the engine's
    max_deliveries: int = 20  # AGENTCOM_QUEUE_MAX_DELIVERIES


_VIEW_COLUMNS: Final = (
    "id",
    "state",
    "description",
    "generation",
    "retry_count",
    "max_retries",
    "assigned_to",
    "complete_by",
    "needed_capabilities",
    "repo",
    "branch",
    "file_hints",
    "success_criteria",
    "verification_steps",
    "complexity",
    "depends_on",
    "goal_id",
    "metadata",
    "last_error",
    "blocked_reason",
    "result",
    "created_at",
    "updated_at",
)


def view(row: Any) -> TaskView:
    """A task row (SQLAlchemy row or `store_batch.Record`) as the API shows it.

    One `model_validate` of a plain dict (nested models included): a fifth of the CPU of
    building the nested models and calling the constructor with attribute reads (claims
    build one per task).
    """
    columns: Mapping[str, Any] = getattr(row, "_mapping", row)  # a Record is a dict already
    fields = {name: columns[name] for name in _VIEW_COLUMNS}
    fields["priority"] = LANES[int(columns["lane"])]
    return TaskView.model_validate(fields)


async def _emit(
    q: Queue,
    conn: AsyncConnection,
    row: store.TaskRow,
    source: TaskState | None,
    reason: str,
    actor: str,
) -> None:
    target = S(row.state)
    event = TaskTransition(
        task_id=row.id,
        from_state=source,
        to_state=target,
        generation=row.generation,
        reason=reason,
        actor=actor,
        at=clock.now(),
        goal_id=row.goal_id,
    )
    await outbox.add(conn, q.outbox, event_subject(source, target), event)


async def _move(
    q: Queue,
    conn: AsyncConnection,
    task_id: str,
    to: TaskState,
    *,
    reason: str,
    actor: str,
    generation: int | None = None,
    values: dict[str, Any] | None = None,
    sources: frozenset[TaskState] | None = None,
) -> store.TaskRow:
    source, row = await store.move(
        conn,
        task_id,
        to,
        generation=generation,
        reason=reason,
        actor=actor,
        values=values,
        sources=sources,
    )
    await _emit(q, conn, row, source, reason, actor)
    return row


def _normalize_repo(url: str | None) -> str | None:
    if url is None:
        return None
    return repo_key(url) or None


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
        await _emit(q, conn, row, None, "submitted", actor)
    meters.count_submitted([row.lane])
    task_traces.record_root(row.id, "task submit", __name__)
    return view(row)


async def _with_repo(conn: AsyncConnection, row: store.TaskRow, task: SubmitTask) -> store.TaskRow:
    if task.repo is not None:
        return row
    inherited = await store.top_active_repo(conn)
    if inherited is None:
        return row
    return await store.set_fields(conn, row.id, {"repo": inherited})


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
        "repo": _normalize_repo(task.repo),
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


async def claim(
    q: Queue, agent_id: str, capabilities: list[str], agent_repos: list[str]
) -> TaskView | None:
    """Assign the best eligible task (lane, then age) to `agent_id`, or None."""
    tasks = await claim_many(q, agent_id, capabilities, agent_repos, 1)
    return tasks[0] if tasks else None


_OUTCOME = {
    "accepted": S.WORKING,
    "completed": S.COMPLETED,
    "partial_pass": S.PARTIAL_PASS,
    "failed": S.FAILED,
}


async def report(q: Queue, msg: ReportTask) -> TaskView:
    """Apply an agent's report. Idempotency key: (task_id, generation, outcome).

    A report for an older generation is refused with `stale_generation` and changes nothing; a
    repeat of the report already applied at this generation returns the task unchanged.
    """
    target = _OUTCOME[msg.outcome]
    if q.claims is not None and target is not S.FAILED:
        return await _report_direct_one(q, msg, target)
    async with q.engine.begin() as conn:
        row = await _fenced(conn, msg.task_id, msg.generation)
        if _already_applied(row, target):
            return view(row)
        if refusal := _refusal(row, msg, target):
            raise refusal
        values: dict[str, Any] = {"result": msg.result or None}
        if target is S.FAILED:
            values["last_error"] = msg.error or "failed without an error message"
        moved = await _move(
            q,
            conn,
            msg.task_id,
            target,
            generation=msg.generation,
            reason=msg.outcome,
            actor=msg.agent_id,
            values=values,
            sources=states.ACTIVE,
        )
        row = await _after_end(q, conn, moved)
        await _settle_dependents(conn, [row])
    meters.count_reported([moved])
    if row is not moved:  # a failure, retried or dead-lettered
        meters.count_ended([row])
    return view(row)


def _refusal(row: Any, msg: ReportTask, target: TaskState) -> AgentcomError | None:
    """Why a report at the task's current generation cannot apply (None: it can)."""
    if S(row.state) not in states.ACTIVE:
        return StaleGenerationError(
            f"assignment {msg.generation} of task {msg.task_id} has ended; it is {row.state}"
        )
    if row.assigned_to != msg.agent_id:
        return ForbiddenError(
            f"task {msg.task_id} is assigned to {row.assigned_to}, not {msg.agent_id}",
            code="wrong_agent",
        )
    if not states.allowed(S(row.state), target):
        return InvalidTransitionError(
            f"task {msg.task_id} is {row.state}; a {msg.outcome} report needs it to be "
            f"{' or '.join(sorted(states.sources(target)))}"
        )
    return None


def _already_applied(row: Any, target: TaskState) -> bool:
    """At the same generation, the task can only be here because this report was applied."""
    if target is S.FAILED:  # a failure moves on at once: retried or dead-lettered
        return row.state in (S.FAILED.value, S.QUEUED.value, S.DEAD_LETTER.value)
    return row.state == target.value


async def _after_end(q: Queue, conn: AsyncConnection, row: store.TaskRow) -> store.TaskRow:
    """The follow-up of a failure: retried while retries and deliveries remain, else
    dead-lettered. (Dependents are the caller's: `_settle_dependents`.)"""
    if S(row.state) is not S.FAILED:
        return row
    delivered = await store.deliveries(conn, row)
    if row.retry_count < row.max_retries and delivered < q.max_deliveries:
        not_before = clock.now() + q.retry_backoff * (2**row.retry_count)
        return await _move(
            q,
            conn,
            row.id,
            S.QUEUED,
            reason="retry",
            actor="queue",
            values={
                "retry_count": row.retry_count + 1,
                "not_before": not_before,
                "seq": store.next_seq(),
                "assigned_to": None,
            },
            sources=frozenset({S.FAILED}),
        )
    why = (
        f"failed {row.retry_count + 1} times"
        if row.retry_count >= row.max_retries
        else f"handed to an agent {delivered} times, the most any task may be "
        f"(AGENTCOM_QUEUE_MAX_DELIVERIES={q.max_deliveries})"
    )
    return await _move(
        q,
        conn,
        row.id,
        S.DEAD_LETTER,
        actor="queue",
        reason=f"{why}; last error: {row.last_error}",
    )


# states whose entry (or exit, for the BLOCKING ones: a retry) changes what dependents wait for
_SETTLES: Final = frozenset({S.COMPLETED, S.QUEUED, *states.BLOCKING})


async def _settle_dependents(db: store_batch.Db, rows: Sequence[Any]) -> int:
    """Release or (un)block the waiting dependents of tasks that just changed state, in the
    caller's transaction: `store_batch.settle_dependents` is the one place that decides."""
    ids = sorted(row.id for row in rows if S(row.state) in _SETTLES)
    if not ids:
        return 0
    return await store_batch.settle_dependents(db, ids, telemetry.inject_headers())


async def requeue(q: Queue, msg: RequeueTask, actor: str) -> TaskView:
    """Hand an assignment back to the queue (not a failure: no retry is counted, unless
    `count_retry` asks for it: then it is a failure, retried or dead-lettered).

    A hand-back still used a delivery: a task already handed out `max_deliveries` times fails
    instead, and is dead-lettered saying so (a task that kills every sidecar before it
    journals the assignment would otherwise bounce from agent to agent forever).
    """
    async with q.engine.begin() as conn:
        row = await _fenced(conn, msg.task_id, msg.generation)
        if row.state == S.QUEUED.value:
            return view(row)
        if msg.count_retry and S(row.state) in (S.FAILED, S.DEAD_LETTER):
            return view(row)  # this hand-back was applied: retried, or dead-lettered
        if msg.unaccepted_only and row.state != S.ASSIGNED.value:
            # the agent's `accepted` won the race: it has been told to start, so it is the only
            # one that may run this generation; its outcome (or silence) ends the attempt
            raise ConflictError(
                f"task {msg.task_id} is {row.state}, no longer waiting to be accepted",
                code="already_accepted",
            )
        if msg.agent_id is not None and row.assigned_to != msg.agent_id:
            raise ForbiddenError(
                f"task {msg.task_id} is assigned to {row.assigned_to}, not {msg.agent_id}",
                code="wrong_agent",
            )
        if msg.count_retry or await store.deliveries(conn, row) >= q.max_deliveries:
            # FAILED is a waypoint: `_after_end` retries it (counting one) or dead-letters it
            why = "handed back as failed" if msg.count_retry else "handed back without an outcome"
            row = await _move(
                q,
                conn,
                msg.task_id,
                S.FAILED,
                generation=msg.generation,
                reason=msg.reason,
                actor=actor,
                values={"last_error": f"{why}: {msg.reason}"},
            )
            row = await _after_end(q, conn, row)
            await _settle_dependents(conn, [row])
            return view(row)
        row = await _move(
            q,
            conn,
            msg.task_id,
            S.QUEUED,
            generation=msg.generation,
            reason=msg.reason,
            actor=actor,
            values={"assigned_to": None, "seq": store.next_seq()},
            sources=states.ACTIVE,  # an ended assignment is not handed back
        )
    return view(row)


async def _fenced(conn: AsyncConnection, task_id: str, generation: int) -> store.TaskRow:
    row = await store.fetch(conn, task_id, lock=True)
    if row is None:
        raise NotFoundError(f"no task {task_id}", code="task_not_found")
    if row.generation != generation:
        raise StaleGenerationError(
            f"task {task_id} is at generation {row.generation}, not {generation}"
        )
    return row


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
        row = await _move(q, conn, task_id, S.CANCELLED, reason="cancelled", actor=actor)
        await _settle_dependents(conn, [row])
    meters.count_ended([row])
    return view(row)


async def retry_dead_letter(q: Queue, task_id: str, actor: str) -> TaskView:
    """Put a dead-lettered or partial_pass task back in its lane with a fresh retry budget.

    Its waiting dependents lose the `blocked_reason` it gave them; one that another
    dependency still holds shows that one instead."""
    async with q.engine.begin() as conn:
        try:
            row = await _move(
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
        await _settle_dependents(conn, [row])
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
        row = await _move(
            q,
            conn,
            task_id,
            S.COMPLETED,
            reason="partial result accepted",
            actor=actor,
            sources=frozenset({S.PARTIAL_PASS}),
        )
        await _settle_dependents(conn, [row])
    return view(row)


async def sweep_dependencies(q: Queue, limit: int) -> tuple[int, int, int]:
    """One pass of the dependency sweep (one transaction): release waiting tasks whose
    dependencies all completed, and correct `blocked_reason`s, that an event missed.
    Returns (looked at, released, reasons changed)."""
    async with q.engine.begin() as conn:
        counts = await store_batch.sweep_dependents(conn, limit, telemetry.inject_headers())
    if counts[1] or counts[2]:
        outbox.wake_local(q.outbox)
    return counts


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
    return [view(r) for r in rows], (str(rows[-1].seq) if more and rows else None)


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


async def list_repos(q: Queue) -> list[dict[str, Any]]:
    async with q.engine.connect() as conn:
        rows = await store.list_repos(conn)
    return [
        {"url": r.url, "position": r.position, "paused": r.paused, "added_by": r.added_by}
        for r in rows
    ]


async def add_repo(q: Queue, url: str, actor: str) -> list[dict[str, Any]]:
    normalized = _normalize_repo(url)
    if not normalized:
        raise InvalidError("url is empty after trimming", field="url")
    async with q.engine.begin() as conn:
        await store.add_repo(conn, normalized, actor)
    return await list_repos(q)


async def remove_repo(q: Queue, url: str) -> list[dict[str, Any]]:
    async with q.engine.begin() as conn:
        if not await store.remove_repo(conn, _normalize_repo(url) or ""):
            raise NotFoundError(f"no repo {url}", code="repo_not_found")
    return await list_repos(q)


async def pause_repo(q: Queue, url: str, paused: bool) -> list[dict[str, Any]]:
    async with q.engine.begin() as conn:
        if not await store.set_paused(conn, _normalize_repo(url) or "", paused):
            raise NotFoundError(f"no repo {url}", code="repo_not_found")
    return await list_repos(q)


async def reorder_repos(q: Queue, order: list[str]) -> list[dict[str, Any]]:
    wanted = [_normalize_repo(u) or "" for u in order]
    async with q.engine.begin() as conn:
        known = {r.url for r in await store.list_repos(conn)}
        if set(wanted) != known or len(wanted) != len(known):
            # well-formed, but not what is registered now: the state refuses it (409)
            raise ConflictError(
                "order must list every registered repo exactly once; registered: "
                + ", ".join(sorted(known)),
                code="order_mismatch",
                field="order",
            )
        await store.reorder_repos(conn, wanted)
    return await list_repos(q)


# batch variants: one transaction and one prebuilt statement per transition for many tasks ----


async def claim_many(
    q: Queue, agent_id: str, capabilities: list[str], agent_repos: list[str], limit: int
) -> list[TaskView]:
    """Assign up to `limit` eligible tasks to `agent_id` (lane, then age), each as `claim` would.

    One statement does the whole claim (update, history rows, events), so it runs as its own
    transaction: no BEGIN/COMMIT round trips.
    """
    agent_repos = repo_keys(agent_repos)  # tasks store the key: compare keys
    headers = telemetry.inject_headers()
    rows: Sequence[Any]
    if q.claims is not None:  # the hot path: no SQLAlchemy layers, no pre-ping round trips
        async with q.claims.acquire() as driver:
            rows = await store_batch.claim_direct(
                driver, agent_id, capabilities, agent_repos, limit, headers
            )
    else:
        async with q.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            rows = await store_batch.claim(
                conn, agent_id, capabilities, agent_repos, limit, headers
            )
    if rows:
        outbox.wake_local(q.outbox)
        meters.count_assigned(rows)
    return [view(row) for row in rows]


async def claim_for_agents(
    q: Queue,
    agent_ids: list[str],
    capabilities: list[str],
    agent_repos: list[str],
    exclude: Sequence[str] = (),
) -> list[TaskView]:
    """One task each for several agents alike, best task to the first agent; one statement.

    Fewer tasks than agents when fewer are eligible. Each is assigned as `claim` would assign it.
    Tasks in `exclude` are skipped (the scheduler names the tasks an agent refused for good).
    """
    if len(set(agent_ids)) != len(agent_ids):
        raise InvalidError("agent_ids lists an agent twice", field="agent_ids")
    agent_repos = repo_keys(agent_repos)
    headers = telemetry.inject_headers()
    rows: Sequence[Any]
    if q.claims is not None:
        async with q.claims.acquire() as driver:
            rows = await store_batch.claim_agents(
                None, driver, agent_ids, capabilities, agent_repos, headers, exclude
            )
    else:
        async with q.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            rows = await store_batch.claim_agents(
                conn, None, agent_ids, capabilities, agent_repos, headers, exclude
            )
    if rows:
        outbox.wake_local(q.outbox)
        meters.count_assigned(rows)
    return [view(row) for row in rows]


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


async def _submit_rows(q: Queue, tasks: list[SubmitTask], actor: str, *, full: bool) -> list[Any]:
    """`submit_many`'s work: one row per task in order (id, client_key, state, generation; with
    `full`, the whole task row, read in the same transaction)."""
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
            rows = await _submit_in(driver, tasks, deps_of, actor, full=full)
    elif q.claims is not None:  # the raw asyncpg pool: no pre-ping, no statement building
        async with q.claims.acquire() as driver, driver.transaction():
            rows = await _submit_in(driver, tasks, deps_of, actor, full=full)
    else:
        async with q.engine.begin() as conn:
            rows = await _submit_in(conn, tasks, deps_of, actor, full=full)
    outbox.wake_local(q.outbox)
    return rows


async def _submit_in(
    conn: store_batch.Db,
    tasks: list[SubmitTask],
    deps_of: list[list[str]],
    actor: str,
    *,
    full: bool,
) -> list[Any]:
    """`_submit_rows` inside its transaction, on either kind of connection."""
    keys = [t.client_key for t in tasks if t.client_key]
    by_key = await store_batch.by_keys(conn, keys)
    known = await store_batch.dependency_states(conn, sorted({d for deps in deps_of for d in deps}))
    plan: list[str | dict[str, Any]] = []  # per task: the client_key it returns, or its row
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
        plan.append(_values(task, deps, known, actor))  # no repo: the statement inherits
        if task.client_key:
            taken.add(task.client_key)
    new = [p for p in plan if isinstance(p, dict)]
    inserted = {
        r.id: r for r in await store_batch.submit(conn, new, telemetry.inject_headers(), full=full)
    }
    await store_batch.insert_deps(
        conn, [(v["id"], d) for v in new if v["id"] in inserted for d in v["depends_on"]]
    )
    # counted before the commit: a commit that then fails (rare) over-counts its batch
    meters.count_submitted(v["lane"] for v in new if v["id"] in inserted)
    for task_id in inserted:  # each task's trace starts here (`task_traces`)
        task_traces.record_root(task_id, "task submit", __name__)
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


class SubmitGroup:
    """Group commit of single submits: those that arrive within one turn of the event loop
    share one `submit_many` transaction (one prebuilt statement for all of them, one commit).

    Each caller still gets its own answer: if the shared transaction fails for any reason
    (one task's unknown dependency, say), every task of the group is submitted again on its
    own by `submit`, so one bad task fails only its own caller, with its own error.
    """

    def __init__(self) -> None:
        self._waiting: list[tuple[Queue, SubmitTask, str, asyncio.Future[TaskView]]] = []
        self._flushes: set[asyncio.Task[None]] = set()

    async def submit(self, q: Queue, task: SubmitTask, actor: str) -> TaskView:
        """Submit `task` as `submit` would, together with the others of this loop turn."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[TaskView] = loop.create_future()
        self._waiting.append((q, task, actor, answer))
        if len(self._waiting) == 1:  # the first of this turn schedules the flush
            flush = loop.create_task(self._flush())
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)
        return await answer

    async def _flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        groups: dict[tuple[int, str], list[tuple[Queue, SubmitTask, asyncio.Future[TaskView]]]]
        groups = {}
        for q, task, actor, answer in waiting:
            groups.setdefault((id(q.engine), actor), []).append((q, task, answer))
        await asyncio.gather(
            *(self._commit(members, actor) for (_, actor), members in groups.items())
        )

    async def _commit(
        self, members: list[tuple[Queue, SubmitTask, asyncio.Future[TaskView]]], actor: str
    ) -> None:
        q = members[0][0]
        try:
            rows = await _submit_rows(q, [task for _, task, _ in members], actor, full=True)
        except Exception:  # noqa: BLE001 - each task gets its own answer below
            rows = None
        for n, (member_q, task, answer) in enumerate(members):
            if answer.done():  # the caller went away (cancelled)
                continue
            if rows is not None:
                answer.set_result(view(rows[n]))
                continue
            try:
                answer.set_result(await submit(member_q, task, actor))
            except Exception as error:  # noqa: BLE001 - handed to its own caller
                if not answer.done():
                    answer.set_exception(error)


_groups: "weakref.WeakKeyDictionary[AsyncEngine, SubmitGroup]" = weakref.WeakKeyDictionary()


async def submit_grouped(q: Queue, task: SubmitTask, actor: str) -> TaskView:
    """`submit` through the engine's `SubmitGroup`: concurrent single submits commit together."""
    group = _groups.get(q.engine)
    if group is None:
        group = _groups[q.engine] = SubmitGroup()
    return await group.submit(q, task, actor)


def _check_reports(
    current: dict[str, Any], reports: list[ReportTask]
) -> tuple[dict[str, ReportOutcome], list[dict[str, Any]]]:
    """Split reports into outcomes known now (refused, already applied) and moves to make."""
    results: dict[str, ReportOutcome] = {}
    moves: list[dict[str, Any]] = []
    for msg in reports:
        target = _OUTCOME[msg.outcome]
        row = current.get(msg.task_id)
        if row is None:
            error = NotFoundError(f"no task {msg.task_id}", code="task_not_found")
            results[msg.task_id] = _outcome(msg.task_id, error)
        elif row.generation != msg.generation:
            error = StaleGenerationError(
                f"task {msg.task_id} is at generation {row.generation}, not {msg.generation}"
            )
            results[msg.task_id] = _outcome(msg.task_id, error)
        elif _already_applied(row, target):
            results[msg.task_id] = _applied(row)
        elif refusal := _refusal(row, msg, target):
            results[msg.task_id] = _outcome(msg.task_id, refusal)
        else:
            moves.append(_move_of(msg, row, target))
    return results, moves


def _move_of(msg: ReportTask, row: Any, target: TaskState) -> dict[str, Any]:
    """One input row of `store_batch.REPORT`."""
    return {
        "task_id": msg.task_id,
        "agent_id": msg.agent_id,
        "generation": msg.generation,
        "source": row.state,
        "target": target.value,
        "reason": msg.outcome,
        "subject": event_subject(S(row.state), target),
        "result": msg.result or None,
        "last_error": msg.error or "failed without an error message",
    }


def _outcome(task_id: str, error: AgentcomError) -> ReportOutcome:
    return ReportOutcome(task_id=task_id, ok=False, error_code=error.code, error=error.detail)


def _applied(row: Any) -> ReportOutcome:
    # built from our own row (str, enum, int): no validation needed, and a batch makes 1,000
    return ReportOutcome.model_construct(
        task_id=row.id, ok=True, state=S(row.state), generation=row.generation
    )


async def _report_direct_one(q: Queue, msg: ReportTask, target: TaskState) -> TaskView:
    """`report` on the raw asyncpg pool: `report_many`'s lock and statement for one task, the
    single op's errors, its dependents settled in the same transaction."""
    async with q.claims.acquire() as driver, driver.transaction():
        row = (await store_batch.lock_direct(driver, [msg.task_id])).get(msg.task_id)
        if row is None:
            raise NotFoundError(f"no task {msg.task_id}", code="task_not_found")
        if row.generation != msg.generation:
            raise StaleGenerationError(
                f"task {msg.task_id} is at generation {row.generation}, not {msg.generation}"
            )
        if not _already_applied(row, target):
            if refusal := _refusal(row, msg, target):
                raise refusal
            headers = telemetry.inject_headers()
            moved = await store_batch.report_direct(driver, [_move_of(msg, row, target)], headers)
            if not moved:  # the lock makes this unreachable; never silent
                raise TransitionRefusedError(f"task {msg.task_id} cannot move now")
            if moved[0].has_dependents:
                await _settle_dependents(driver, moved)
            meters.count_reported(moved)
        full = await store_batch.fetch_direct(driver, msg.task_id)
    outbox.wake_local(q.outbox)
    return view(full)


async def _report_direct(
    q: Queue, reports: list[ReportTask], headers: dict[str, str]
) -> tuple[dict[str, ReportOutcome], list[dict[str, Any]]]:
    """`report_many` without failures on the raw asyncpg pool: the same lock, checks, statement
    and settling of dependents, without the engine's layers."""
    async with q.claims.acquire() as driver, driver.transaction():
        current = await store_batch.lock_direct(driver, [m.task_id for m in reports])
        results, moves = _check_reports(current, reports)
        moved = await store_batch.report_direct(driver, moves, headers)
        for row in moved:
            results[row.id] = _applied(row)
        await _settle_dependents(driver, [row for row in moved if row.has_dependents])
    meters.count_reported(moved)
    return results, moves


async def report_many(q: Queue, reports: list[ReportTask]) -> list[ReportOutcome]:
    """Apply many reports in one transaction; each is applied or refused as `report` would be.

    One report's refusal (stale generation, wrong agent...) is its own result and does not stop
    the others. A task may appear once per batch.
    """
    seen: set[str] = set()
    for n, msg in enumerate(reports):
        if msg.task_id in seen:
            raise InvalidError(
                f"task {msg.task_id} is reported twice in one batch", field=f"reports.{n}.task_id"
            )
        seen.add(msg.task_id)
    headers = telemetry.inject_headers()
    if q.claims is not None and all(m.outcome != "failed" for m in reports):
        results, moves = await _report_direct(q, reports, headers)
    else:
        async with q.engine.begin() as conn:
            current = await store_batch.lock(conn, [m.task_id for m in reports])
            results, moves = _check_reports(current, reports)
            ended: list[Any] = []
            reported = await store_batch.report(conn, moves, headers)
            for row in reported:
                if row.state == S.FAILED.value:
                    full = await store.fetch(conn, row.id)
                    assert full is not None
                    row = await _after_end(q, conn, full)  # the row it became
                    meters.count_ended([row])
                results[row.id] = _applied(row)
                ended.append(row)
            await _settle_dependents(conn, ended)  # once for the batch: kids locked in id order
            meters.count_reported(reported)
    if moves:
        outbox.wake_local(q.outbox)
    for move in moves:  # the lock makes this unreachable; kept so a guard miss is never silent
        if move["task_id"] not in results:
            results[move["task_id"]] = _outcome(
                move["task_id"],
                TransitionRefusedError(f"task {move['task_id']} cannot move now"),
            )
    return [results[m.task_id] for m in reports]
