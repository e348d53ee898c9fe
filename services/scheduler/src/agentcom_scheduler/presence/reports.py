"""One report at a time: presence, then what the report asks (an outcome forwarded to the
queue, a cancel ended, a hello reconciled, a refusal noted)."""

import logging

from nats.aio.client import Client
from nats.js import JetStreamContext
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from agentcom_common import messaging, micro, subjects
from agentcom_common.contracts.agent import (
    BLOCKED_REJECTION,
    AgentReport,
    AgentState,
    Cancel,
    Cancelled,
    Heartbeat,
    Hello,
    Progress,
    Recovering,
    Restarting,
    TaskOutcome,
    ToolCallReport,
)
from agentcom_common.contracts.task import (
    RequeueTask,
    TaskView,
)
from agentcom_common.errors import (
    AgentcomError,
    ConflictError,
    InvalidError,
    NotFoundError,
    UnavailableError,
)
from agentcom_scheduler import limits, ops, store
from agentcom_scheduler.presence.core import (
    Gate,
    answer_accepted,
    error_field,
    first_error,
    hand_back,
    parse,
    resources_of,
    to_queue,
    transition_if,
)
from agentcom_scheduler.presence.heartbeats import follow_blocked

log = logging.getLogger("agentcom_scheduler.presence")  # one name for all of presence


async def on_report(
    s: ops.Scheduler,
    nc: Client,
    js: JetStreamContext,
    subject: str,
    data: bytes,
    gate: Gate | None = None,
) -> str:
    """Apply one report; returns what became of it (`applied`, `dropped`). Idempotent: a
    repeat only refreshes `last_seen` (the queue acknowledges a repeated outcome at the same
    generation once)."""
    gate = gate or Gate()
    speaker = subject.split(".")[2]
    report = parse(speaker, data)
    live = isinstance(report, Progress | ToolCallReport)
    if live and (done := await _live(s, nc, gate, speaker, report, data)) is not None:
        return done
    resources = resources_of(report) if isinstance(report, Heartbeat) else None
    async with s.engine.begin() as conn:
        if not live and await _limited(conn, gate, speaker, report):  # commits only the take
            return "dropped"
        before = await store.seen(
            conn, speaker, resources, beat=isinstance(report, Heartbeat | Hello)
        )
        if before is None:
            raise NotFoundError(f"report from unknown agent {speaker}", code="agent_not_found")
        if isinstance(report, Hello):  # a (re)started sidecar may have a new config
            await store.forget_refusals(conn, speaker)
            await store.set_supervisor(conn, speaker, report.supervisor)
        state = AgentState(before.state)
        if state is AgentState.OFFLINE:
            await transition_if(
                s,
                conn,
                speaker,
                AgentState.OFFLINE,
                AgentState.IDLE,
                report.kind,
                subjects.AGENT_ONLINE,
            )
            state = AgentState.IDLE
        if isinstance(report, Heartbeat):
            await follow_blocked(s, conn, {speaker: state}, {speaker: report.blocked})
    await _act(s, nc, js, before, report)
    return "applied"


async def _limited(conn: AsyncConnection, gate: Gate, speaker: str, report: AgentReport) -> bool:
    """Whether the report is over its agent's rate. Its token is taken in the transaction that
    goes on to apply it (no pool checkout and commit of its own); a report that fails there (an
    unknown agent) takes none."""
    tier = limits.REPORT_CLASS.get(report.kind)
    limiter = gate.limiter
    if tier is None or limiter is None or not await limiter.take_in(conn, speaker, tier):
        return False
    log.warning("report.rate_limited", extra={"agent_id": speaker, "kind": report.kind})
    return True


async def _live(
    s: ops.Scheduler,
    nc: Client,
    gate: Gate,
    speaker: str,
    report: Progress | ToolCallReport,
    data: bytes,
) -> str | None:
    """Live output (progress, a tool call) onto the task's subject: never stored, never waited
    for; an outcome is never queued behind it. Only for the agent's own current assignment:
    one agent must not be able to write into another task's live stream (its subject names
    it, not the task it names). What became of it, or None when its presence is due too."""
    async with s.engine.begin() as conn:
        if await _limited(conn, gate, speaker, report):
            return "dropped"
        held = await store.holding(conn, speaker)
    if held != (report.task_id, report.generation):
        log.warning("report.not_its_task", extra={"agent_id": speaker, "kind": report.kind})
        return "dropped"
    live = subjects.TASK_PROGRESS if isinstance(report, Progress) else subjects.TASK_TOOL_CALL
    await nc.publish(live, data)
    return None if gate.due(speaker) else "applied"


async def _act(
    s: ops.Scheduler, nc: Client, js: JetStreamContext, before: store.AgentRow, report: AgentReport
) -> None:
    if isinstance(report, TaskOutcome):
        await _forward(s, nc, js, report)
    elif isinstance(report, Cancelled):
        await _stopped(s, nc, report)
    elif isinstance(report, Hello):
        await _reconcile(s, nc, js, before, report)
    elif isinstance(report, Restarting):
        log.info("agent.restarting", extra={"agent_id": report.agent_id})
    elif isinstance(report, Recovering):
        log.info("agent.recovering", extra={"agent_id": report.agent_id, "task_id": report.task_id})


async def _reconcile(
    s: ops.Scheduler, nc: Client, js: JetStreamContext, row: store.AgentRow, hello: Hello
) -> None:
    """After a reconnect: keep an assignment both sides agree on, drop the rest.

    Same task and generation: nothing to do, its outcome will be accepted. A task the hub does
    not hold for this agent at that generation: the sidecar is told to drop it. A task the hub
    thinks the agent holds but the sidecar has lost: it goes back to the queue.
    """
    held = (row.task_id, row.generation) if row.task_id else None
    said = (hello.task_id, hello.generation) if hello.task_id else None
    if held == said:
        return
    if said is not None:
        assert hello.task_id is not None
        assert hello.generation is not None
        cancel = Cancel(task_id=hello.task_id, generation=hello.generation, reason="stale")
        await messaging.publish(js, subjects.agent_inbox(hello.agent_id), cancel)
    if held is not None and await hand_back(nc, row, "requeue"):
        async with s.engine.begin() as conn:
            await transition_if(
                s,
                conn,
                row.id,
                AgentState(row.state),
                AgentState.IDLE,
                f"sidecar lost {row.task_id}",
                subjects.AGENT_IDLE,
            )


async def _stopped(s: ops.Scheduler, nc: Client, report: Cancelled) -> None:
    """The sidecar says a cancelled assignment has ended (its processes are gone, nothing is
    delivered): the agent holding it becomes idle and takes the next task.

    Fenced by task and generation: the word on an assignment the agent no longer holds (taken
    back past its deadline, a stale one dropped after a hello) changes nothing. Should the queue
    still have the task there (a cancel it never made), it is handed back first; a task the
    queue cancelled refuses that, which is the usual case and harmless.
    """
    async with s.engine.begin() as conn:
        row = await store.fetch(conn, report.agent_id, lock=True)
        held = (AgentState.ASSIGNED.value, AgentState.WORKING.value)
        holds = (
            row is not None
            and row.state in held
            and (row.task_id, row.generation) == (report.task_id, report.generation)
        )
        if not holds:
            await _stopped_elsewhere(nc, report)
            return
        assert row is not None
        if not await hand_back(nc, row, "cancelled"):
            raise UnavailableError("the queue did not answer a hand-back", code="queue_unavailable")
        await transition_if(
            s,
            conn,
            row.id,
            AgentState(row.state),
            AgentState.IDLE,
            f"cancelled {report.task_id}",
            subjects.AGENT_IDLE,
        )


async def _stopped_elsewhere(nc: Client, report: Cancelled) -> None:
    """The agent stopped an assignment its row no longer shows (the row moved on while the
    sidecar still ran it, e.g. a hello reconcile after a NATS restart cancelled it as stale):
    the queue may still hold the task `working` on this agent at this generation, and nobody
    would end that attempt for the working timeout (10 min; the faults test found two). So it
    is handed back, fenced by agent and generation; a queue that has moved on, or cancelled
    the task itself, refuses, which is the usual case and harmless."""
    back = RequeueTask(
        task_id=report.task_id,
        generation=report.generation,
        reason=f"agent {report.agent_id} stopped it ({report.note[:200] or 'cancelled'})",
        agent_id=report.agent_id,
    )
    try:
        await micro.call(nc, "queue", "requeue", back, TaskView)
    except UnavailableError:
        raise
    except AgentcomError as exc:
        log.info("cancelled.elsewhere", extra={"task_id": report.task_id, "error": exc.code})
        return
    log.warning(
        "task.handed_back",
        extra={"agent_id": report.agent_id, "task_id": report.task_id, "how": "stopped"},
    )


async def _forward(s: ops.Scheduler, nc: Client, js: JetStreamContext, report: TaskOutcome) -> None:
    """Hand the outcome to the queue (it fences by generation), then move the agent; an
    `accepted` is answered with `start` or, if the queue refused it, `cancel` (`answer_accepted`).

    A `rejected` assignment (no wake command, broken workspace) fails the attempt at once with
    the sidecar's reason, so the retry budget sees it; one the agent's config will never
    change (`refused_for_good`) goes back without using a retry (`_refused`).
    """
    if report.refused_for_good or report.code == BLOCKED_REJECTION:
        await _refused(s, nc, report)
        return
    rejected = report.kind == "rejected"
    try:
        request = to_queue(report)
    except ValidationError as exc:  # e.g. a NUL in `result`: never storable, refused once
        raise InvalidError(
            f"{report.agent_id} sent an outcome the queue cannot take: {first_error(exc)}",
            field=error_field(exc),
        ) from None
    try:
        await micro.call(nc, "queue", "report", request, TaskView)
    except UnavailableError:
        raise
    except AgentcomError:
        await answer_accepted(js, report, took=False)
        raise
    async with s.engine.begin() as conn:
        if report.kind == "accepted":
            await transition_if(
                s,
                conn,
                report.agent_id,
                AgentState.ASSIGNED,
                AgentState.WORKING,
                f"accepted {report.task_id}",
                subjects.AGENT_WORKING,
            )
        else:  # rejected leaves `assigned`, an outcome leaves `working`: both end idle
            await transition_if(
                s,
                conn,
                report.agent_id,
                AgentState.ASSIGNED if rejected else AgentState.WORKING,
                AgentState.IDLE,
                f"{report.kind} {report.task_id}",
                subjects.AGENT_IDLE,
            )
    await answer_accepted(js, report, took=True)


async def _refused(s: ops.Scheduler, nc: Client, report: TaskOutcome) -> None:
    """The agent can never take this task (shell commands off, executor missing, repo not
    served): note it, so matching never offers it this task again (until its next hello), hand
    the task back as a plain requeue (no retry used, another agent may take it), free the agent.
    An agent that cannot take any work now (`agent_blocked`: its heartbeat saying so was on its
    way when the task was matched) hands it back the same way, unnoted, and is `blocked`.

    The note comes first and is idempotent: killed after it, the redelivered report does the
    rest; killed after the requeue, the repeat finds the task queued (or moved on) and frees
    the agent all the same. The queue checks the task is this agent's (`wrong_agent`).
    """
    assert report.code is not None
    why = (report.error or report.code)[:400]
    blocked = report.code == BLOCKED_REJECTION
    if not blocked:
        async with s.engine.begin() as conn:
            await store.refuse(conn, report.agent_id, report.task_id, report.code, why)
    back = RequeueTask(
        task_id=report.task_id,
        generation=report.generation,
        reason=f"agent {report.agent_id} cannot run it: {why}",
        agent_id=report.agent_id,
    )
    try:
        await micro.call(nc, "queue", "requeue", back, TaskView)
    except ConflictError as exc:  # handed back before, and offered again since: nothing to do
        log.info("refusal.stale", extra={"task_id": report.task_id, "error": exc.code})
    async with s.engine.begin() as conn:
        row = await store.fetch(conn, report.agent_id, lock=True)
        if row is not None and (row.task_id, row.generation) == (
            report.task_id,
            report.generation,
        ):
            await transition_if(
                s,
                conn,
                report.agent_id,
                AgentState(row.state),
                AgentState.BLOCKED if blocked else AgentState.IDLE,
                why if blocked else f"cannot run {report.task_id}",
                subjects.AGENT_BLOCKED if blocked else subjects.AGENT_IDLE,
            )
    log.info(
        "task.refused",
        extra={"agent_id": report.agent_id, "task_id": report.task_id, "code": report.code},
    )


def unforwardable(speaker: str, data: bytes) -> InvalidError | None:
    """Why this outcome could never be handed to the queue, None if it could."""
    try:
        report = parse(speaker, data)
        if isinstance(report, TaskOutcome):
            to_queue(report)
    except InvalidError as exc:
        return exc
    except ValidationError as exc:
        return InvalidError(f"{speaker} sent an outcome the queue cannot take: {first_error(exc)}")
    return None
