"""What ends or hands back an assignment: an agent's report (one or many, fenced by
generation), a hand-back (requeue), and the retry or dead letter that follows a failure.
"""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from agentcom_common import clock, telemetry
from agentcom_common.contracts.task import (
    ReportOutcome,
    ReportTask,
    RequeueTask,
    TaskState,
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
from agentcom_queue import meters, states, store, store_batch
from agentcom_queue.ops.core import Queue, S, event_subject, move_task, view
from agentcom_queue.ops.dependents import settle_dependents

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
        moved = await move_task(
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
        await settle_dependents(conn, [row])
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
    dead-lettered. (Dependents are the caller's: `settle_dependents`.)"""
    if S(row.state) is not S.FAILED:
        return row
    delivered = await store.deliveries(conn, row)
    if row.retry_count < row.max_retries and delivered < q.max_deliveries:
        not_before = clock.now() + q.retry_backoff * (2**row.retry_count)
        return await move_task(
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
    return await move_task(
        q,
        conn,
        row.id,
        S.DEAD_LETTER,
        actor="queue",
        reason=f"{why}; last error: {row.last_error}",
    )


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
            row = await move_task(
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
            await settle_dependents(conn, [row])
            return view(row)
        row = await move_task(
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
                await settle_dependents(driver, moved)
            meters.count_reported(moved)
        full = await store_batch.fetch_direct(driver, msg.task_id)
    q.relay.wake()
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
        await settle_dependents(driver, [row for row in moved if row.has_dependents])
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
            await settle_dependents(conn, ended)  # once for the batch: kids locked in id order
            meters.count_reported(reported)
    if moves:
        q.relay.wake()
    for move in moves:  # the lock makes this unreachable; kept so a guard miss is never silent
        if move["task_id"] not in results:
            results[move["task_id"]] = _outcome(
                move["task_id"],
                TransitionRefusedError(f"task {move['task_id']} cannot move now"),
            )
    return [results[m.task_id] for m in reports]
