"""Agent reports: hello and heartbeats bring an agent online, silence takes it offline, and
task outcomes are forwarded to the queue and move the agent.

Reports arrive on `agentcom.agent.<id>.report` (stream REPORTS). The subject, which NATS
permissions tie to the agent's own credentials, says who is speaking; a payload naming another
agent is refused. The sweep is the safety net that needs no message at all: any agent silent for
`missed_heartbeats` intervals goes offline.
"""

import asyncio
import contextlib
import logging
from datetime import timedelta

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from agentcom_common import clock, outbox, subjects
from agentcom_common.contracts.agent import AgentReport, AgentState, AgentTransition, TaskOutcome
from agentcom_common.contracts.task import ReportTask
from agentcom_common.errors import AgentcomError, InvalidError, NotFoundError, UnavailableError
from agentcom_scheduler import ops, queue_client, store

log = logging.getLogger(__name__)
_REPORT: TypeAdapter[AgentReport] = TypeAdapter(AgentReport)
CONSUMER = "scheduler-presence"


async def transition_if(
    s: ops.Scheduler,
    conn: AsyncConnection,
    agent_id: str,
    source: AgentState,
    target: AgentState,
    reason: str,
    event: str,
) -> bool:
    """Move the agent if TRANSITIONS allow it now; history row and event commit with it."""
    if not await store.move(conn, agent_id, target):
        return False
    await store.record(conn, agent_id, source, target, reason)
    change = AgentTransition(
        agent_id=agent_id, from_state=source, to_state=target, reason=reason, at=clock.now()
    )
    await outbox.add(conn, s.outbox, subjects.event("agent", event), change)
    return True


async def on_report(s: ops.Scheduler, nc: Client, subject: str, data: bytes) -> None:
    """Apply one report. Idempotent: a repeat only refreshes `last_seen` (the queue
    acknowledges a repeated outcome at the same generation once)."""
    speaker = subject.split(".")[2]
    try:
        report = _REPORT.validate_json(data)
    except ValidationError as exc:
        raise InvalidError(
            f"report from {speaker} is malformed: {exc.errors()[0]['msg']}"
        ) from None
    if report.agent_id != speaker:
        raise InvalidError(f"{speaker} sent a report naming {report.agent_id}", code="wrong_agent")
    async with s.engine.begin() as conn:
        before = await store.seen(conn, speaker)
        if before is None:
            raise NotFoundError(f"report from unknown agent {speaker}", code="agent_not_found")
        if before.state == AgentState.OFFLINE.value:
            await transition_if(
                s, conn, speaker, AgentState.OFFLINE, AgentState.IDLE, report.kind, "online"
            )
    if isinstance(report, TaskOutcome):
        await _forward(s, nc, report)


async def _forward(s: ops.Scheduler, nc: Client, report: TaskOutcome) -> None:
    """Hand the outcome to the queue (it fences by generation), then move the agent."""
    await queue_client.call(
        nc,
        "report",
        ReportTask(
            task_id=report.task_id,
            agent_id=report.agent_id,
            generation=report.generation,
            outcome=report.kind,
            result=dict(report.result),
            error=report.error,
        ),
    )
    async with s.engine.begin() as conn:
        if report.kind == "accepted":
            await transition_if(
                s,
                conn,
                report.agent_id,
                AgentState.ASSIGNED,
                AgentState.WORKING,
                f"accepted {report.task_id}",
                "working",
            )
        else:
            await transition_if(
                s,
                conn,
                report.agent_id,
                AgentState.WORKING,
                AgentState.IDLE,
                f"{report.kind} {report.task_id}",
                "idle",
            )


async def consume_reports(s: ops.Scheduler, nc: Client, js: JetStreamContext) -> None:
    """Pull presence reports; ack after the change committed, drop (term) what can never apply."""
    sub = await js.pull_subscribe(subjects.REPORTS_ALL, durable=CONSUMER)
    while True:
        try:
            batch = await sub.fetch(64, timeout=1)
        except TimeoutError:
            continue
        for msg in batch:
            await _handle(s, nc, msg)


async def _handle(s: ops.Scheduler, nc: Client, msg: Msg) -> None:
    try:
        await on_report(s, nc, msg.subject, msg.data)
    except UnavailableError as exc:  # the queue or Postgres is away: try again shortly
        log.warning("report.deferred", extra={"subject": msg.subject, "error": exc.code})
        await msg.nak(delay=1)
    except AgentcomError as exc:
        log.warning("report.refused", extra={"subject": msg.subject, "error": exc.code})
        await msg.term()
    except Exception:  # Postgres away: leave it for redelivery
        log.exception("report.failed", extra={"subject": msg.subject})
        await msg.nak(delay=1)
    else:
        await msg.ack()


async def sweep(s: ops.Scheduler, silence: timedelta) -> int:
    """Take every agent silent for longer than `silence` offline; returns how many."""
    async with s.engine.begin() as conn:
        silent = await store.silent_since(conn, clock.now() - silence)
        for row in silent:
            await transition_if(
                s,
                conn,
                row.id,
                AgentState(row.state),
                AgentState.OFFLINE,
                "missed heartbeats",
                "offline",
            )
    for row in silent:
        log.warning("agent.offline", extra={"agent_id": row.id, "reason": "missed heartbeats"})
    return len(silent)


async def sweep_forever(s: ops.Scheduler, silence: timedelta, every: timedelta) -> None:
    while True:
        with contextlib.suppress(Exception):  # a failed pass is retried by the next one
            await sweep(s, silence)
        await asyncio.sleep(every.total_seconds())
