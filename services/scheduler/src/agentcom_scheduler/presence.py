"""Presence: hello and heartbeat reports bring an agent online; silence takes it offline.

Reports arrive on `agentcom.agent.<id>.report` (stream REPORTS). The subject, which NATS
permissions tie to the agent's own credentials, says who is speaking; a payload naming another
agent is refused. The sweep is the safety net that needs no message at all: any agent silent for
`missed_heartbeats` intervals goes offline.
"""

import asyncio
import contextlib
import logging
from datetime import timedelta

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from agentcom_common import clock, outbox, subjects
from agentcom_common.contracts.agent import AgentState, AgentTransition, PresenceReport
from agentcom_common.errors import AgentcomError, InvalidError, NotFoundError
from agentcom_scheduler import ops, store

log = logging.getLogger(__name__)
_REPORT: TypeAdapter[PresenceReport] = TypeAdapter(PresenceReport)
CONSUMER = "scheduler-presence"


async def transition(
    s: ops.Scheduler,
    conn: AsyncConnection,
    agent_id: str,
    source: AgentState,
    target: AgentState,
    reason: str,
    event: str,
) -> None:
    if await store.move(conn, agent_id, target):
        await store.record(conn, agent_id, source, target, reason)
        transition_ = AgentTransition(
            agent_id=agent_id, from_state=source, to_state=target, reason=reason, at=clock.now()
        )
        await outbox.add(conn, s.outbox, subjects.event("agent", event), transition_)


async def on_report(s: ops.Scheduler, subject: str, data: bytes) -> None:
    """Apply one presence report. Idempotent: a repeat only refreshes `last_seen`."""
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
            await transition(
                s, conn, speaker, AgentState.OFFLINE, AgentState.IDLE, report.kind, "online"
            )


async def consume_reports(s: ops.Scheduler, js: JetStreamContext) -> None:
    """Pull presence reports; ack after the change committed, drop (term) what can never apply."""
    sub = await js.pull_subscribe(subjects.REPORTS_ALL, durable=CONSUMER)
    while True:
        try:
            batch = await sub.fetch(64, timeout=1)
        except TimeoutError:
            continue
        for msg in batch:
            await _handle(s, msg)


async def _handle(s: ops.Scheduler, msg: Msg) -> None:
    try:
        await on_report(s, msg.subject, msg.data)
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
            await transition(
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
