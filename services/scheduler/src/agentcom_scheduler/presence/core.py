"""What the report paths and the sweeps share: the one agent move (`transition_if`), the
consumer's `Gate`, parsing a report, the outcome as the queue takes it, the answer to an
`accepted`, and handing a task back to the queue."""

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from agentcom_common import clock, consumer, messaging, micro, outbox, subjects
from agentcom_common.contracts.agent import (
    AgentReport,
    AgentState,
    AgentTransition,
    Cancel,
    Heartbeat,
    Start,
    TaskOutcome,
)
from agentcom_common.contracts.task import (
    Reported,
    ReportTask,
    RequeueTask,
    TaskView,
)
from agentcom_common.errors import (
    AgentcomError,
    InvalidError,
    UnavailableError,
)
from agentcom_scheduler import limits, meters, ops, store

log = logging.getLogger("agentcom_scheduler.presence")  # one name for all of presence


REPORT: TypeAdapter[AgentReport] = TypeAdapter(AgentReport)
CONSUMER = "scheduler-presence"


async def transition_if(
    s: ops.Scheduler,
    conn: AsyncConnection,
    agent_id: str,
    source: AgentState,
    target: AgentState,
    reason: str,
    subject: str,
    values: dict[str, object] | None = None,
) -> bool:
    """Move the agent if TRANSITIONS allow it now; history row and event commit with it.
    `blocked_reason` is the reason while blocked, cleared on any other move (as `batch`)."""
    blocked = {"blocked_reason": reason if target is AgentState.BLOCKED else None}
    if not await store.move(conn, agent_id, target, blocked | (values or {})):
        return False
    await store.record(conn, agent_id, source, target, reason)
    change = AgentTransition(
        agent_id=agent_id, from_state=source, to_state=target, reason=reason, at=clock.now()
    )
    await outbox.add(conn, s.outbox, subject, change)
    if target is AgentState.IDLE:
        s.wakeups.matching(refresh=source is AgentState.OFFLINE)
    return True


@dataclass(slots=True)
class Gate:
    """Per-process state of the report consumer: rate limits and presence refresh throttling."""

    limiter: limits.Limiter | None = None
    touch_every: float = 1.0
    reading_since: datetime | None = None
    """When this process's first read of the report stream began (None: it has not finished
    one yet). Silence before then is not this process's to judge: see `sweep`."""
    _touched: dict[str, float] = field(default_factory=dict[str, float])

    def due(self, agent_id: str) -> bool:
        """Whether a busy report (progress, tool call) should refresh presence now."""
        now = time.monotonic()
        if now - self._touched.get(agent_id, -1e9) < self.touch_every:
            return False
        self._touched[agent_id] = now
        return True


def first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])


def error_field(exc: ValidationError) -> str | None:
    return ".".join(str(p) for p in exc.errors()[0]["loc"]) or None


def parse(speaker: str, data: bytes) -> AgentReport:
    try:
        report = REPORT.validate_json(data)
    except ValidationError as exc:
        raise InvalidError(
            f"report from {speaker} is malformed: {first_error(exc)}", field=error_field(exc)
        ) from None
    if report.agent_id != speaker:
        raise InvalidError(f"{speaker} sent a report naming {report.agent_id}", code="wrong_agent")
    return report


def resources_of(beat: Heartbeat) -> dict[str, object]:
    """What the agent view shows of a heartbeat: host load, GPUs, local models, isolation."""
    return beat.model_dump(
        mode="json",
        include={
            "cpu_percent",
            "ram_percent",
            "vram_percent",
            "load",
            "host",
            "gpus",
            "ollama_url",
            "models",
            "isolation",
        },
    )


_QUEUE_OUTCOME: dict[str, Reported] = {
    "accepted": "accepted",
    "rejected": "failed",
    "completed": "completed",
    "partial_pass": "partial_pass",
    "failed": "failed",
}


async def answer_accepted(js: JetStreamContext, report: TaskOutcome, *, took: bool) -> None:
    """Answer an `accepted`: `start` once the queue holds the task as working on this agent,
    `cancel` when it refused (the task was taken back, cancelled, re-assigned). The sidecar
    runs nothing before this word (`Start`), so a task the scheduler took back before the
    agent's `accepted` applied never runs there. Sent after the agent's move is committed; a
    failed publish retries the report, and the queue acknowledges the repeat once, so the word
    goes out again (stored once: same message id)."""
    if report.kind != "accepted":
        return
    key = f"{report.task_id}.{report.generation}"
    word: Start | Cancel = (
        Start(task_id=report.task_id, generation=report.generation)
        if took
        else Cancel(task_id=report.task_id, generation=report.generation, reason="superseded")
    )
    await messaging.publish(
        js,
        subjects.agent_inbox(report.agent_id),
        word,
        msg_id=f"{word.kind}.{key}",
    )


def to_queue(report: TaskOutcome) -> ReportTask:
    rejected = report.kind == "rejected"
    return ReportTask(
        task_id=report.task_id,
        agent_id=report.agent_id,
        generation=report.generation,
        outcome=_QUEUE_OUTCOME[report.kind],
        result=_with_delivery(report),
        error=f"rejected: {report.error or 'no reason given'}" if rejected else report.error,
    )


def _with_delivery(report: TaskOutcome) -> dict[str, object]:
    """The result as the queue stores it: the typed delivery report rides in it as `delivery`."""
    result = dict(report.result)
    if report.delivery is not None:
        result["delivery"] = report.delivery.model_dump(mode="json")
    return result


async def retry_all(settler: consumer.Settler, msgs: list[Msg]) -> None:
    for msg in msgs:
        await settler.retry(msg)


async def hand_back(
    nc: Client, row: store.AgentRow, how: str, *, unaccepted_only: bool = False
) -> bool:
    """Give the agent's task back: as a failed attempt (retry counted) or a plain requeue.
    False when the queue could not be asked, or (`unaccepted_only`) the agent's `accepted`
    has applied meanwhile: the agent keeps the task, and its report moves it to working."""
    failure = {
        "failed": f"agent {row.id} went offline (missed heartbeats)",
        "overdue": f"agent {row.id} was past the execution deadline",
    }
    try:
        if how in failure:
            await micro.call(
                nc,
                "queue",
                "report",
                ReportTask(
                    task_id=row.task_id,
                    agent_id=row.id,
                    generation=row.generation,
                    outcome="failed",
                    error=failure[how],
                ),
                TaskView,
            )
        else:
            requeue = {
                "requeue": f"agent {row.id} did not accept in time",
                "cancelled": f"agent {row.id} stopped it on a cancel",
            }
            await micro.call(
                nc,
                "queue",
                "requeue",
                RequeueTask(
                    task_id=row.task_id,
                    generation=row.generation,
                    reason=requeue[how],
                    unaccepted_only=unaccepted_only,
                ),
                TaskView,
            )
    except UnavailableError:
        return False
    except AgentcomError as exc:
        if exc.code == "already_accepted":
            log.info("handback.accepted_meanwhile", extra={"agent_id": row.id})
            return False
        log.warning("handback.refused", extra={"agent_id": row.id, "error": exc.code})
    log.warning("task.handed_back", extra={"agent_id": row.id, "task_id": row.task_id, "how": how})
    meters.handbacks.add(1, {"reason": how})
    return True
