"""What every queue use case shares: the `Queue` the ops need, the task view, the event
each transition emits and the one move (guarded UPDATE, history row, event) the single ops make.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final, Literal, cast

from pydantic import TypeAdapter
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agentcom_common import clock, outbox, subjects
from agentcom_common.contracts.task import (
    Lane,
    TaskState,
    TaskTransition,
    TaskView,
)
from agentcom_common.outbox import Relay
from agentcom_common.repos import repo_key
from agentcom_queue import store

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
    """What the ops need: the engine, the outbox table and this app's relay, the retry backoff,
    the claim pool, the cap on deliveries. One per app (`app.build`): routes, NATS handlers and
    the sweep share it."""

    engine: AsyncEngine
    outbox: Table
    relay: Relay  # woken after the commits that skip the NOTIFY
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
    "repo_url",
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
    building the nested models and calling the constructor with attribute reads.
    """
    return TaskView.model_validate(_fields(row))


_VIEWS: Final = TypeAdapter(list[TaskView])


def views(rows: Iterable[Any]) -> list[TaskView]:
    """`view` of each row, validated as one list: one call into pydantic's core per batch
    (a claim makes up to 100), not one per task."""
    return _VIEWS.validate_python([_fields(row) for row in rows])


def _fields(row: Any) -> dict[str, Any]:
    columns: Mapping[str, Any] = getattr(row, "_mapping", row)  # a Record is a dict already
    fields = {name: columns[name] for name in _VIEW_COLUMNS}
    fields["priority"] = LANES[int(columns["lane"])]
    return fields


async def emit(
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
        risk_tier=_risk_tier(row.result) if target in _DELIVERED else None,
    )
    await outbox.add(conn, q.outbox, event_subject(source, target), event)


_DELIVERED = frozenset({TaskState.COMPLETED, TaskState.PARTIAL_PASS})


def _risk_tier(result: object) -> Literal[1, 2, 3] | None:
    """The tier the sidecar gave its delivered change (`result.delivery.risk.tier`)."""
    delivery = cast(dict[str, Any], result).get("delivery") if isinstance(result, dict) else None
    risk = cast(dict[str, Any], delivery).get("risk") if isinstance(delivery, dict) else None
    tier = cast(dict[str, Any], risk).get("tier") if isinstance(risk, dict) else None
    return tier if tier in (1, 2, 3) else None


async def move_task(
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
    await emit(q, conn, row, source, reason, actor)
    return row


def normalize_repo(url: str | None) -> str | None:
    if url is None:
        return None
    return repo_key(url) or None


def clone_url(url: str | None) -> str | None:
    """The URL to clone, as given: only blanks and trailing slashes go (the key also drops
    `.git`, which can name another repository on disk)."""
    if url is None:
        return None
    return url.strip().rstrip("/") or None
