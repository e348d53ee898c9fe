"""Agent reports: hello and heartbeats bring an agent online, silence takes it offline, and
task outcomes are forwarded to the queue and move the agent.

Reports arrive on `agentcom.agent.<id>.report` (stream REPORTS). The subject, which NATS
permissions tie to the agent's own credentials, says who is speaking; a payload naming another
agent is refused. The sweep is the safety net that needs no message at all: any agent without a
heartbeat for `missed_heartbeats` intervals less a margin (`silence_for`) goes offline, so its task
is back in the queue within `missed_heartbeats` intervals.
"""

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from agentcom_common import clock, consumer, messaging, micro, outbox, subjects
from agentcom_common.contracts.agent import (
    BLOCKED_REJECTION,
    AgentReport,
    AgentState,
    AgentTransition,
    Cancel,
    Cancelled,
    Heartbeat,
    Hello,
    Progress,
    Recovering,
    Restarting,
    Start,
    TaskOutcome,
    ToolCallReport,
)
from agentcom_common.contracts.task import (
    ListTasks,
    Reported,
    ReportedTasks,
    ReportTask,
    ReportTasks,
    RequeueTask,
    TaskList,
    TaskState,
    TaskView,
)
from agentcom_common.errors import (
    AgentcomError,
    ConflictError,
    InvalidError,
    NotFoundError,
    UnavailableError,
)
from agentcom_scheduler import batch, limits, meters, ops, store, wakeups

log = logging.getLogger(__name__)
_cutoffs: set[asyncio.Future[None]] = set()  # kicks under way (a task needs a reference)
_REPORT: TypeAdapter[AgentReport] = TypeAdapter(AgentReport)
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
        wakeups.matching(refresh=source is AgentState.OFFLINE)
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
    report = _parse(speaker, data)
    tier = limits.REPORT_TIER.get(report.kind)
    if tier is not None and gate.limiter is not None and gate.limiter.take(speaker, tier):
        log.warning("report.rate_limited", extra={"agent_id": speaker, "kind": report.kind})
        return "dropped"
    if isinstance(report, Progress | ToolCallReport):
        # live output: never stored, never waited for; an outcome is never queued behind it.
        # Only for the agent's own current assignment: one agent must not be able to write
        # into another task's live stream (its subject names it, not the task it names)
        async with s.engine.connect() as conn:
            held = await store.holding(conn, speaker)
        if held != (report.task_id, report.generation):
            log.warning("report.not_its_task", extra={"agent_id": speaker, "kind": report.kind})
            return "dropped"
        subject = (
            subjects.TASK_PROGRESS if isinstance(report, Progress) else subjects.TASK_TOOL_CALL
        )
        await nc.publish(subject, data)
        if not gate.due(speaker):
            return "applied"
    resources = _resources(report) if isinstance(report, Heartbeat) else None
    async with s.engine.begin() as conn:
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
            await _follow_blocked(s, conn, {speaker: state}, {speaker: report.blocked})
    await _act(s, nc, js, before, report)
    return "applied"


def _first(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])


def _where(exc: ValidationError) -> str | None:
    return ".".join(str(p) for p in exc.errors()[0]["loc"]) or None


def _parse(speaker: str, data: bytes) -> AgentReport:
    try:
        report = _REPORT.validate_json(data)
    except ValidationError as exc:
        raise InvalidError(
            f"report from {speaker} is malformed: {_first(exc)}", field=_where(exc)
        ) from None
    if report.agent_id != speaker:
        raise InvalidError(f"{speaker} sent a report naming {report.agent_id}", code="wrong_agent")
    return report


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


def _resources(beat: Heartbeat) -> dict[str, object]:
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
    if held is not None and await _hand_back(nc, row, "requeue"):
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
        if not await _hand_back(nc, row, "cancelled"):
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


_QUEUE_OUTCOME: dict[str, Reported] = {
    "accepted": "accepted",
    "rejected": "failed",
    "completed": "completed",
    "partial_pass": "partial_pass",
    "failed": "failed",
}


async def _forward(s: ops.Scheduler, nc: Client, js: JetStreamContext, report: TaskOutcome) -> None:
    """Hand the outcome to the queue (it fences by generation), then move the agent; an
    `accepted` is answered with `start` or, if the queue refused it, `cancel` (`_answer`).

    A `rejected` assignment (no wake command, broken workspace) fails the attempt at once with
    the sidecar's reason, so the retry budget sees it; one the agent's config will never
    change (`refused_for_good`) goes back without using a retry (`_refused`).
    """
    if report.refused_for_good or report.code == BLOCKED_REJECTION:
        await _refused(s, nc, report)
        return
    rejected = report.kind == "rejected"
    try:
        request = _to_queue(report)
    except ValidationError as exc:  # e.g. a NUL in `result`: never storable, refused once
        raise InvalidError(
            f"{report.agent_id} sent an outcome the queue cannot take: {_first(exc)}",
            field=_where(exc),
        ) from None
    try:
        await micro.call(nc, "queue", "report", request, TaskView)
    except UnavailableError:
        raise
    except AgentcomError:
        await _answer(js, report, took=False)
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
    await _answer(js, report, took=True)


async def _answer(js: JetStreamContext, report: TaskOutcome, *, took: bool) -> None:
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


REPORTS_AT_ONCE = 256
"""Reports fetched and handled as one batch: one `report_batch` call per round of outcomes,
so the queue's answer time is shared by more reports when it is busy."""


async def consume_reports(
    s: ops.Scheduler,
    nc: Client,
    js: JetStreamContext,
    gate: Gate | None = None,
    on_cutoff: Callable[[str], Awaitable[None]] | None = None,
    policy: consumer.Policy | None = None,
) -> None:
    """Pull presence reports; ack after the change committed; what can never apply is refused
    once and counted against its agent (`agentcom_common.consumer`)."""
    gate = gate or Gate()  # one for the consumer's life: it remembers who was refreshed when
    policy = policy or consumer.Policy()
    settler = consumer.Settler(js, CONSUMER, policy, _violation(gate, on_cutoff))
    sub = await consumer.subscribe(
        js, subjects.REPORTS_STREAM, subjects.REPORTS_ALL, CONSUMER, policy
    )
    try:
        while True:
            reading = clock.now()
            try:
                batch = await sub.fetch(REPORTS_AT_ONCE, timeout=1)
            except TimeoutError:  # nothing waits: everything sent before `reading` is applied
                gate.reading_since = gate.reading_since or reading
                continue
            except Exception:  # reconnecting or the stream is away: unacked reports stay stored
                log.exception("reports.fetch_failed")
                await asyncio.sleep(1)
                continue
            try:
                await _handle_batch(s, nc, js, batch, gate, settler)
            except Exception:  # e.g. an unexpected queue reply: the unacked ones come again
                log.exception("reports.batch_failed")
            else:
                gate.reading_since = gate.reading_since or reading
    finally:
        # a fetch cut short leaves its reply pending; without this, draining the connection
        # at shutdown waits for it until the drain timeout
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


def _violation(
    gate: Gate, on_cutoff: Callable[[str], Awaitable[None]] | None
) -> Callable[[Msg], None]:
    """Count a refused report against its agent; too many cut it off (and kick it)."""

    def count(msg: Msg) -> None:
        speaker = msg.subject.split(".")[2]
        limiter = gate.limiter
        if limiter is None or not (cutoff := limiter.violation(speaker)):
            return
        log.warning("agent.cut_off", extra={"agent_id": speaker, "seconds": cutoff})
        if on_cutoff is not None:
            # in the background: kicking waits for every NATS server's answer (a quarter
            # second on a cluster), which the reports of other agents must not wait for
            kicking = asyncio.ensure_future(on_cutoff(speaker))
            _cutoffs.add(kicking)
            kicking.add_done_callback(_cutoffs.discard)

    return count


async def _handle_batch(
    s: ops.Scheduler,
    nc: Client,
    js: JetStreamContext,
    batch: list[Msg],
    gate: Gate,
    settler: consumer.Settler,
) -> None:
    """Each agent's reports in order; different agents' reports side by side. Agents that sent
    only heartbeats are refreshed together in one statement (at 1,000 agents heartbeats are
    most of the traffic); agents that sent only heartbeats and task outcomes are handled
    together too (`_outcomes_many`): one `report_batch` call per round, one transaction for
    their moves. Anything else goes one report at a time."""
    by_agent: dict[str, list[Msg]] = {}
    for msg in batch:
        by_agent.setdefault(msg.subject, []).append(msg)
    beats: list[tuple[Msg, Heartbeat]] = []
    outcomes: list[list[tuple[Msg, Heartbeat | TaskOutcome]]] = []
    rest: list[list[Msg]] = []
    for n, msgs in enumerate(by_agent.values()):
        if n % 32 == 31:  # parsing a big batch must not hold up matching for milliseconds
            await asyncio.sleep(0)
        parsed = [_plain(m, gate) for m in msgs]
        plain = [(m, p) for m, p in zip(msgs, parsed, strict=True) if p is not None]
        if len(plain) < len(msgs):
            rest.append(msgs)
        elif all(isinstance(p, Heartbeat) for _, p in plain):
            beats += [(m, p) for m, p in plain if isinstance(p, Heartbeat)]
        else:
            outcomes.append(plain)

    async def in_order(msgs: list[Msg]) -> None:
        for msg in msgs:
            await _handle(s, nc, js, msg, gate, settler)

    await asyncio.gather(
        _beat_many(s, beats, gate, settler),
        _outcomes_many(s, nc, js, outcomes, gate, settler),
        *(in_order(msgs) for msgs in rest),
    )


_OUTCOME_KINDS = frozenset({"accepted", "rejected", "completed", "partial_pass", "failed"})


def _is_outcome(data: bytes) -> bool:
    try:
        body = json.loads(data)
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("kind") in _OUTCOME_KINDS  # pyright: ignore[reportUnknownMemberType]


def _plain(msg: Msg, gate: Gate) -> Heartbeat | TaskOutcome | None:
    """The heartbeat or task outcome in `msg` if it is a well-formed one from its speaker that
    may be counted and forwarded as it is; None sends the agent's reports the single way."""
    speaker = msg.subject.split(".")[2]
    try:
        report = _REPORT.validate_json(msg.data)
    except ValidationError:
        return None
    if not isinstance(report, Heartbeat | TaskOutcome) or report.agent_id != speaker:
        return None
    if isinstance(report, TaskOutcome) and (
        report.refused_for_good or report.code == BLOCKED_REJECTION
    ):
        return None  # not a queue report: handed back (`_refused`)
    if gate.limiter is not None and gate.limiter.blocked(speaker):
        return None
    if isinstance(report, TaskOutcome):
        try:
            _to_queue(report)
        except ValidationError:
            return None
    return report


def _to_queue(report: TaskOutcome) -> ReportTask:
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


def _outcome_move(report: TaskOutcome) -> batch.Move:
    """The agent's move once the queue took the outcome (as `_forward` moves it)."""
    if report.kind == "accepted":
        return batch.Move(
            report.agent_id,
            AgentState.ASSIGNED,
            AgentState.WORKING,
            f"accepted {report.task_id}",
            subjects.AGENT_WORKING,
        )
    # rejected leaves `assigned`, an outcome leaves `working`: both end idle
    return batch.Move(
        report.agent_id,
        AgentState.ASSIGNED if report.kind == "rejected" else AgentState.WORKING,
        AgentState.IDLE,
        f"{report.kind} {report.task_id}",
        subjects.AGENT_IDLE,
    )


@dataclass(slots=True)
class _Plan:
    """What `_outcomes_many` does with a batch: presence per agent, outcomes in rounds."""

    resources: dict[str, dict[str, object] | None] = field(
        default_factory=dict[str, dict[str, object] | None]
    )
    first_kind: dict[str, str] = field(default_factory=dict[str, str])
    beats: list[Msg] = field(default_factory=list[Msg])
    beating: set[str] = field(default_factory=set[str])  # agents whose heartbeat counts
    blocked: dict[str, str | None] = field(default_factory=dict[str, str | None])  # they say
    rounds: list[list[tuple[Msg, TaskOutcome]]] = field(
        default_factory=list[list[tuple[Msg, TaskOutcome]]]
    )


def _plan(groups: list[list[tuple[Msg, Heartbeat | TaskOutcome]]], gate: Gate) -> _Plan:
    """The k-th outcome of every agent goes in round k or later (a task at most once per
    round, an agent's outcomes in order)."""
    plan = _Plan()
    in_round: list[set[str]] = []
    for items in groups:
        k = 0
        for msg, report in items:
            plan.first_kind.setdefault(report.agent_id, report.kind)
            plan.resources.setdefault(report.agent_id, None)
            if isinstance(report, Heartbeat):
                plan.beats.append(msg)
                limiter = gate.limiter
                if limiter is None or not limiter.take(report.agent_id, "light"):
                    plan.resources[report.agent_id] = _resources(report)
                    plan.beating.add(report.agent_id)
                    plan.blocked[report.agent_id] = report.blocked
                continue  # over the rate: dropped, like any light report
            while k < len(plan.rounds) and report.task_id in in_round[k]:
                k += 1
            if k == len(plan.rounds):
                plan.rounds.append([])
                in_round.append(set())
            plan.rounds[k].append((msg, report))
            in_round[k].add(report.task_id)
            k += 1
    return plan


async def _retry_all(settler: consumer.Settler, msgs: list[Msg]) -> None:
    for msg in msgs:
        await settler.retry(msg)


async def _outcomes_many(
    s: ops.Scheduler,
    nc: Client,
    js: JetStreamContext,
    groups: list[list[tuple[Msg, Heartbeat | TaskOutcome]]],
    gate: Gate,
    settler: consumer.Settler,
) -> None:
    """Heartbeats and task outcomes of many agents, each agent's in order.

    As `on_report` does for each: presence first (one statement for all, offline agents come
    online), then the outcomes go to the queue and the agents move. Outcomes are sent in
    rounds (`_plan`), each round one `report_batch` call; then one transaction moves every
    agent whose outcome the queue took. A refused outcome (stale generation...) is dropped as
    a single one would be; if the queue is away, that round and the later ones are redelivered.
    """
    if not groups:
        return
    plan = _plan(groups, gate)
    try:
        async with s.engine.begin() as conn:
            known = await _seen_many(
                s, conn, plan.resources, plan.first_kind, plan.beating, plan.blocked
            )
    except Exception:  # Postgres away: leave them all for redelivery
        log.exception("reports.outcomes_failed")
        await _retry_all(settler, plan.beats + [m for r in plan.rounds for m, _ in r])
        return
    for msg in plan.beats:
        await msg.ack()
    for r in plan.rounds:
        for msg, report in r:
            if report.agent_id not in known:
                why = f"report from unknown agent {report.agent_id}"
                await settler.refuse(msg, "agent_not_found", why, violation=False)
    rounds = [[(m, rep) for m, rep in r if rep.agent_id in known] for r in plan.rounds]
    answers = await _report_rounds(nc, [r for r in rounds if r])
    await _settle(s, js, [r for r in rounds if r], answers, settler)


async def _report_rounds(
    nc: Client, rounds: list[list[tuple[Msg, TaskOutcome]]]
) -> list[list[bool]]:
    """Each round's outcomes to the queue in one call; per report whether the queue took it.
    Stops at the first round the queue could not answer (fewer answers than rounds)."""
    answers: list[list[bool]] = []
    for r in rounds:
        try:
            reports = ReportTasks(reports=[_to_queue(rep) for _, rep in r])
            reply = await micro.call(nc, "queue", "report_batch", reports, ReportedTasks)
        except AgentcomError as exc:  # the queue is away: this round and the rest come again
            log.warning("report.deferred", extra={"error": exc.code, "reports": len(r)})
            break
        for (msg, _), answer in zip(r, reply.results, strict=True):
            if not answer.ok:
                log.warning(
                    "report.refused", extra={"subject": msg.subject, "error": answer.error_code}
                )
        answers.append([answer.ok for answer in reply.results])
    return answers


async def _settle(
    s: ops.Scheduler,
    js: JetStreamContext,
    rounds: list[list[tuple[Msg, TaskOutcome]]],
    answers: list[list[bool]],
    settler: consumer.Settler,
) -> None:
    """Move the agents whose outcomes the queue took, in one transaction; then ack them (term
    the refused ones, nak the rounds the queue did not answer)."""
    try:
        async with s.engine.begin() as conn:
            for r, oks in zip(rounds, answers, strict=False):  # an agent at most once per round
                moves = [_outcome_move(rep) for (_, rep), ok in zip(r, oks, strict=True) if ok]
                await batch.transition_many(s, conn, moves)
    except Exception:  # Postgres away: redelivered; the queue acknowledges a repeat once
        log.exception("reports.outcomes_failed")
        await _retry_all(settler, [m for r in rounds for m, _ in r])
        return
    wakeups.matching()  # the agents that finished are idle now, committed
    for k, r in enumerate(rounds):
        if k >= len(answers):
            await _retry_all(settler, [m for m, _ in r])
            continue
        for (msg, report), ok in zip(r, answers[k], strict=True):
            try:
                await _answer(js, report, took=ok)
            except Exception:  # NATS away: the repeat answers again (`_answer`)
                log.exception("reports.answer_failed")
                await settler.retry(msg)
                continue
            await (msg.ack() if ok else msg.term())


async def _beat_many(
    s: ops.Scheduler, beats: list[tuple[Msg, Heartbeat]], gate: Gate, settler: consumer.Settler
) -> None:
    limiter = gate.limiter
    counted = [b for _, b in beats if limiter is None or not limiter.take(b.agent_id, "light")]
    try:
        if counted:
            async with s.engine.begin() as conn:
                await _apply_beats(s, conn, counted)
    except Exception:  # Postgres away: leave them for redelivery
        log.exception("reports.heartbeats_failed")
        await _retry_all(settler, [m for m, _ in beats])
        return
    for msg, _ in beats:  # over the rate: dropped, like any light report
        await msg.ack()


async def _apply_beats(s: ops.Scheduler, conn: AsyncConnection, beats: list[Heartbeat]) -> None:
    """Refresh many agents' presence in one go; those that were offline come online."""
    latest: dict[str, dict[str, object] | None] = {b.agent_id: _resources(b) for b in beats}
    blocked = {b.agent_id: b.blocked for b in beats}
    await _seen_many(s, conn, latest, dict.fromkeys(latest, "heartbeat"), latest, blocked)


async def _seen_many(
    s: ops.Scheduler,
    conn: AsyncConnection,
    resources: dict[str, dict[str, object] | None],
    reasons: dict[str, str],
    beats: Collection[str],
    blocked: dict[str, str | None],
) -> dict[str, AgentState]:
    """`batch.seen_many`, then the offline ones come online (`reasons[agent]` in their history);
    returns each known agent's state as it was."""
    known = await batch.seen_many(conn, resources, beats)
    online = [a for a, state in known.items() if state is AgentState.OFFLINE]
    await batch.transition_many(
        s,
        conn,
        [
            batch.Move(a, AgentState.OFFLINE, AgentState.IDLE, reasons[a], subjects.AGENT_ONLINE)
            for a in online
        ],
    )
    now = known | dict.fromkeys(online, AgentState.IDLE)
    await _follow_blocked(s, conn, now, {a: blocked[a] for a in blocked if a in now})
    return known


async def _follow_blocked(
    s: ops.Scheduler,
    conn: AsyncConnection,
    state_of: dict[str, AgentState],
    said: dict[str, str | None],
) -> None:
    """Follow what the agents' heartbeats say: one that cannot take work (`blocked`, with why)
    goes from idle to blocked, one blocked whose heartbeat no longer says so is idle again.

    Level, not edge: every heartbeat says it, so a lost report, an assignment that crossed
    the first blocked heartbeat (rejected `agent_blocked`, see `_refused`) or a restarted
    scheduler is set right by the next one. An agent busy with a task keeps it; it is judged
    when it is idle again. Matching's cached view of idle agents is refreshed so a blocked
    agent is not offered work from it."""
    moves: list[batch.Move] = []
    for agent, why in said.items():
        state = state_of.get(agent)
        if why is not None and state is AgentState.IDLE:
            moves.append(batch.Move(agent, state, AgentState.BLOCKED, why, subjects.AGENT_BLOCKED))
        elif why is None and state is AgentState.BLOCKED:
            ready = "ready: its sidecar can take work again"
            moves.append(batch.Move(agent, state, AgentState.IDLE, ready, subjects.AGENT_READY))
    if moves:
        await batch.transition_many(s, conn, moves)
        wakeups.matching(refresh=True)


async def _handle(
    s: ops.Scheduler,
    nc: Client,
    js: JetStreamContext,
    msg: Msg,
    gate: Gate,
    settler: consumer.Settler,
) -> None:
    speaker = msg.subject.split(".")[2]
    limiter = gate.limiter
    if limiter is not None and (left := limiter.blocked(speaker)):
        if not _is_outcome(msg.data):
            await msg.term()  # cut off for sending garbage: its presence does not count now
        elif (refused := _unforwardable(speaker, msg.data)) is not None:
            # waiting out the cut-off cannot make it valid: refused now, not held
            await settler.refuse(msg, refused.code, refused.detail, violation=False)
        else:
            # a task's outcome is never dropped: it waits out the cut-off and then counts
            await msg.nak(delay=left)
        return
    await settler.run(msg, lambda: on_report(s, nc, js, msg.subject, msg.data, gate))


def _unforwardable(speaker: str, data: bytes) -> InvalidError | None:
    """Why this outcome could never be handed to the queue, None if it could."""
    try:
        report = _parse(speaker, data)
        if isinstance(report, TaskOutcome):
            _to_queue(report)
    except InvalidError as exc:
        return exc
    except ValidationError as exc:
        return InvalidError(f"{speaker} sent an outcome the queue cannot take: {_first(exc)}")
    return None


async def report_lag(js: JetStreamContext) -> float:
    """How long the oldest report not yet delivered to this consumer has waited, in seconds
    (0 when none waits, or when it cannot be told: judge as if caught up)."""
    try:
        info = await js.consumer_info(subjects.REPORTS_STREAM, CONSUMER)
        if not info.num_pending:
            return 0.0
        delivered = info.delivered.stream_seq if info.delivered else 0
        oldest = await js.get_msg(
            subjects.REPORTS_STREAM,
            seq=(delivered or 0) + 1,
            subject=subjects.REPORTS_ALL,
            next=True,
        )
        stamp = _stamp(oldest.time)
    except Exception:  # noqa: BLE001 - unknown lag: judge as if caught up
        return 0.0
    return max(0.0, (clock.now() - stamp).total_seconds()) if stamp else 0.0


def _stamp(value: object) -> datetime | None:
    """A JetStream message time (RFC 3339 with nanoseconds) as a datetime."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        return None
    head, _, rest = value.rstrip("Z").partition(".")
    micro = (rest[:6]).ljust(6, "0") if rest else "000000"
    return datetime.fromisoformat(f"{head}.{micro}+00:00")


async def sweep(
    s: ops.Scheduler,
    nc: Client,
    js: JetStreamContext,
    silence: timedelta,
    accept: timedelta,
    interval: timedelta | None = None,
    heard_since: datetime | None = None,
    grace: timedelta = timedelta(0),
) -> int:
    """Take silent agents offline and take back assignments nobody accepted or that are past
    their deadline by `grace` (the sidecar stops at the deadline itself and its report, with
    what it did, should win); returns how many.

    The queue hears first, then the agent row changes: if the queue cannot be reached the agent
    keeps its task and the next pass tries again, so no assignment is ever orphaned. A repeat
    after a crash is harmless: the queue acknowledges the same report at the same generation once.

    Reports still waiting for this consumer are not held against the agents: with the oldest
    undelivered report `lag` old, every report sent before then has been applied, so an agent
    is silent only if its last heartbeat is older than both `silence` and `lag + interval`
    (the heartbeat after it would have been sent by then, and applied); an assignment is
    unaccepted only if older than both `accept` and `lag`. A backlog thus delays judgement by
    what it may hide and no more (a backlog used to stop the judging altogether: a heartbeat
    or an `accepted` still queued would make a live agent look silent).

    `heard_since` is when this process began reading reports (`Gate.reading_since`): silence
    and waiting count from no earlier than that. A scheduler that was down did not see what
    happened meanwhile (NATS may have been down too, and an agent cannot log in while no
    scheduler answers the login callout), and a batch it fetched but has not applied yet is
    invisible to `lag`: so a restarted scheduler gives every agent a full `silence` (and every
    assignment a full `accept`) from its first read. None: no such limit (a caller that
    drives the sweep itself).
    """
    changed = 0
    lag = timedelta(seconds=await report_lag(js))
    beat = interval if interval is not None else silence
    if lag + beat > silence:  # we are late, not the agents: judge only what the lag cannot hide
        log.warning("sweep.presence_deferred", extra={"lag_s": lag.total_seconds()})
    async with s.engine.begin() as conn:
        now = clock.now()
        quiet_cutoff = now - max(silence, lag + beat)
        silent = (
            await store.silent_since(conn, quiet_cutoff)
            if _observed(heard_since, quiet_cutoff)
            else []
        )
        for row in silent:
            quiet = (clock.now() - row.last_beat).total_seconds() if row.last_beat else None
            log.warning("agent.silent", extra={"agent_id": row.id, "silent_s": quiet})
            if row.task_id is not None and not await _hand_back(nc, row, "failed"):
                continue
            meters.silent.add(1)
            await transition_if(
                s,
                conn,
                row.id,
                AgentState(row.state),
                AgentState.OFFLINE,
                "missed heartbeats",
                subjects.AGENT_OFFLINE,
            )
            changed += 1
        accept_cutoff = clock.now() - max(accept, lag)
        unaccepted = (
            await store.unaccepted_since(conn, accept_cutoff)
            if _observed(heard_since, accept_cutoff)
            else []
        )
        for row in unaccepted:
            # only while still unaccepted: an `accepted` that won the race has told the agent
            # to start, and giving the task to another agent then would run it twice
            if not await _hand_back(nc, row, "requeue", unaccepted_only=True):
                continue
            await transition_if(
                s,
                conn,
                row.id,
                AgentState.ASSIGNED,
                AgentState.IDLE,
                f"{row.task_id} not accepted in time",
                subjects.AGENT_IDLE,
            )
            changed += 1
        for row in await store.overdue(conn, clock.now() - grace):
            if not await _hand_back(nc, row, "overdue"):
                continue
            cancel = Cancel(task_id=row.task_id, generation=row.generation, reason="deadline")
            await messaging.publish(js, subjects.agent_inbox(row.id), cancel)
            await transition_if(
                s,
                conn,
                row.id,
                AgentState(row.state),
                AgentState.IDLE,
                f"{row.task_id} past its deadline",
                subjects.AGENT_IDLE,
            )
            changed += 1
    return changed


def _observed(heard_since: datetime | None, cutoff: datetime) -> bool:
    """Whether this process has been reading reports since before `cutoff`: only then can
    silence (or a missing `accepted`) older than `cutoff` be its own observation."""
    return heard_since is None or heard_since < cutoff


async def _hand_back(
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


DETECTION_MARGIN = 0.2
"""Share of one heartbeat interval by which the offline decision comes before `missed`
intervals have passed since the agent's last heartbeat, so that its task is back in the queue
(report, event) within `missed` intervals, as issue 5 measures detection. A live agent is
never at risk: its next heartbeat is due `missed - 1` intervals before that."""


def silence_for(interval: timedelta, missed: int) -> timedelta:
    """How long after its last heartbeat an agent is taken offline."""
    return interval * missed - interval * DETECTION_MARGIN


async def sweep_forever(
    s: ops.Scheduler,
    nc: Client,
    js: JetStreamContext,
    silence: timedelta,
    accept: timedelta,
    every: timedelta,
    interval: timedelta | None = None,
    gate: Gate | None = None,
    grace: timedelta = timedelta(0),
) -> None:
    """Sweep every `every`, and at the moment the next agent falls silent (the oldest last
    heartbeat + `silence`): detection does not wait for the next tick. With the report
    consumer's `gate`, nothing is judged before its first read, and silence counts from then."""
    retried: datetime | None = None
    while True:
        pause = every.total_seconds()
        started = time.perf_counter()
        try:
            # before the consumer's first read: "since now", so nobody is judged yet
            since = None if gate is None else gate.reading_since or clock.now()
            await sweep(s, nc, js, silence, accept, interval, since, grace)
            pause, retried = await _until_silent(s, silence, every, retried, since)
        except Exception:  # a failed pass is retried by the next one
            log.exception("sweep.failed")
        if log.isEnabledFor(logging.DEBUG):
            took = round((time.perf_counter() - started) * 1000, 2)
            log.debug("sweep.pass", extra={"ms": took, "pause_s": round(pause, 3)})
        await asyncio.sleep(pause)


async def _until_silent(
    s: ops.Scheduler,
    silence: timedelta,
    every: timedelta,
    retried: datetime | None,
    heard_since: datetime | None = None,
) -> tuple[float, datetime | None]:
    """Seconds until the next sweep: when the quietest agent passes `silence`, and at most
    `every` or `silence` (an agent that comes online meanwhile falls silent `silence` after
    it at the earliest). An agent that fell silent while the pass ran is judged at once; one
    still there after that retry (its hand-back failed, a backlog may hide its heartbeat)
    waits for the regular pass. Returns the pause and the last beat retried at once."""
    longest = min(every, silence).total_seconds()
    async with s.engine.connect() as conn:
        oldest = await store.oldest_beat(conn)
    if oldest is None:
        return longest, None
    if heard_since is not None:  # nobody's silence counts from before the first read
        oldest = max(oldest, heard_since)
    due = (oldest + silence - clock.now()).total_seconds()
    if due <= 0:
        return (longest, retried) if oldest == retried else (0.0, oldest)
    return min(longest, due + 0.001), None  # just past it: `last_beat < cutoff`


async def requeue_stranded(
    s: ops.Scheduler, nc: Client, state: Literal["working", "assigned"], older_than: timedelta
) -> int:
    """Requeue tasks the queue has had in `state` for longer than `older_than` on an agent that
    is offline, removed, or no longer holds them; returns how many.

    The silence sweep hands a task back the moment its agent goes offline; this catches what it
    cannot see: an agent removed mid-task, a hand-back lost to a crash, a row that disagrees.
    An `assigned` one whose agent does not hold it was never sent (the scheduler or the queue
    was killed between the claim and the agent's move, or the claim's reply was lost): it goes
    back after the accept timeout, and only while still unaccepted (the fence: an agent that
    got it after all is told to drop it, see `_answer`). Such tasks used to wait for the
    working timeout (10 min) in the faults test.
    """
    cutoff = clock.now() - older_than
    requeued = 0
    cursor: str | None = None
    while True:
        asked = ListTasks(state=TaskState(state), cursor=cursor, limit=500)
        page = await micro.call(nc, "queue", "list", asked, TaskList)
        old = [t for t in page.tasks if t.updated_at < cutoff]
        async with s.engine.connect() as conn:  # one checkout per page, not one per task
            rows = {
                t.id: await store.fetch(conn, t.assigned_to) if t.assigned_to else None for t in old
            }
        for task in old:
            agent_id, row = task.assigned_to, rows[task.id]
            online = row is not None and row.state != AgentState.OFFLINE.value
            if online and row is not None and row.task_id == task.id:
                continue
            where = "which is offline" if not online else "which does not hold it"
            back = RequeueTask(
                task_id=task.id,
                generation=task.generation,
                reason=f"{state} over {older_than} on agent {agent_id}, {where}",
                unaccepted_only=state == "assigned",
            )
            try:
                await micro.call(nc, "queue", "requeue", back, TaskView)
            except AgentcomError as exc:  # moved on meanwhile: nothing to do
                log.warning("stranded.refused", extra={"task_id": task.id, "error": exc.code})
                continue
            log.warning("task.stranded_requeued", extra={"task_id": task.id})
            requeued += 1
        cursor = page.next_cursor
        if not cursor:
            break
    return requeued


async def stranded_forever(
    s: ops.Scheduler,
    nc: Client,
    state: Literal["working", "assigned"],
    older_than: timedelta,
    every: timedelta,
) -> None:
    while True:
        try:
            await requeue_stranded(s, nc, state, older_than)
        except UnavailableError as exc:  # the queue is away: the next pass tries again
            log.warning("stranded.paused", extra={"error": exc.code})
        except Exception:  # the queue is away: the next pass tries again
            log.exception("stranded.failed")
        await asyncio.sleep(every.total_seconds())
