"""The report consumer: pulls the REPORTS stream in batches, heartbeats and outcomes of many
agents together (one `report_batch` per round), the rest one at a time; and its lag."""

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from pydantic import ValidationError

from agentcom_common import clock, consumer, micro, subjects
from agentcom_common.contracts.agent import (
    BLOCKED_REJECTION,
    AgentState,
    Heartbeat,
    TaskOutcome,
)
from agentcom_common.contracts.task import (
    ReportedTasks,
    ReportTasks,
)
from agentcom_common.errors import (
    AgentcomError,
)
from agentcom_scheduler import batch, limits, ops
from agentcom_scheduler.presence.core import (
    CONSUMER,
    REPORT,
    Gate,
    answer_accepted,
    resources_of,
    retry_all,
    to_queue,
)
from agentcom_scheduler.presence.cutoffs import violation
from agentcom_scheduler.presence.heartbeats import (
    beat_many,
    counted_beats,
    seen_many,
    wanted_beats,
)
from agentcom_scheduler.presence.reports import on_report, unforwardable

log = logging.getLogger("agentcom_scheduler.presence")  # one name for all of presence

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
    settler = consumer.Settler(js, CONSUMER, policy, violation(s.engine, gate, on_cutoff))
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
    parsed: dict[str, list[Heartbeat | TaskOutcome | None]] = {}
    for n, (subject, msgs) in enumerate(by_agent.items()):
        if n % 32 == 31:  # parsing a big batch must not hold up matching for milliseconds
            await asyncio.sleep(0)
        parsed[subject] = [_plain(m) for m in msgs]
    try:
        admitted = await _admit(s, gate, parsed)
    except Exception:  # Postgres away: all of them again, after the policy's delay
        log.exception("reports.gate_failed")
        await retry_all(settler, batch)
        return
    cut_off = {} if admitted is None else admitted.cut_off
    beats: list[tuple[Msg, Heartbeat]] = []
    outcomes: list[list[tuple[Msg, Heartbeat | TaskOutcome]]] = []
    rest: list[list[Msg]] = []
    for subject, msgs in by_agent.items():
        reports = parsed[subject]
        if None in reports or subject.split(".")[2] in cut_off:
            rest.append(msgs)
            continue
        plain = [(m, p) for m, p in zip(msgs, reports, strict=True) if p is not None]
        if all(isinstance(p, Heartbeat) for _, p in plain):
            beats += [(m, p) for m, p in plain if isinstance(p, Heartbeat)]
        else:
            outcomes.append(plain)

    async def in_order(msgs: list[Msg]) -> None:
        for msg in msgs:
            await _handle(s, nc, js, msg, gate, settler, cut_off)

    await asyncio.gather(
        beat_many(s, beats, admitted, settler),
        _outcomes_many(s, nc, js, outcomes, admitted, settler),
        *(in_order(msgs) for msgs in rest),
    )


async def _admit(
    s: ops.Scheduler, gate: Gate, parsed: dict[str, list[Heartbeat | TaskOutcome | None]]
) -> limits.Admission | None:
    """The batch's gate, one statement: who is cut off, and the light tokens for the heartbeats
    of the agents whose reports are all plain (the others' go the single way, which takes its
    own). None: no limits."""
    if gate.limiter is None:
        return None
    plain_beats = [
        p
        for reports in parsed.values()
        if None not in reports
        for p in reports
        if isinstance(p, Heartbeat)
    ]
    speakers = [subject.split(".")[2] for subject in parsed]
    return await gate.limiter.admit(s.engine, speakers, wanted_beats(plain_beats))


_OUTCOME_KINDS = frozenset({"accepted", "rejected", "completed", "partial_pass", "failed"})


def _is_outcome(data: bytes) -> bool:
    try:
        body = json.loads(data)
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("kind") in _OUTCOME_KINDS  # pyright: ignore[reportUnknownMemberType]


def _plain(msg: Msg) -> Heartbeat | TaskOutcome | None:
    """The heartbeat or task outcome in `msg` if it is a well-formed one from its speaker that
    may be counted and forwarded as it is (unless its speaker is cut off); None sends the
    agent's reports the single way."""
    speaker = msg.subject.split(".")[2]
    try:
        report = REPORT.validate_json(msg.data)
    except ValidationError:
        return None
    if not isinstance(report, Heartbeat | TaskOutcome) or report.agent_id != speaker:
        return None
    if isinstance(report, TaskOutcome) and (
        report.refused_for_good or report.code == BLOCKED_REJECTION
    ):
        return None  # not a queue report: handed back (`_refused`)
    if isinstance(report, TaskOutcome):
        try:
            to_queue(report)
        except ValidationError:
            return None
    return report


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


def _plan(
    groups: list[list[tuple[Msg, Heartbeat | TaskOutcome]]], counted: list[Heartbeat]
) -> _Plan:
    """The k-th outcome of every agent goes in round k or later (a task at most once per
    round, an agent's outcomes in order). Of the heartbeats only those in `counted` (their
    bucket took them) refresh presence."""
    plan = _Plan()
    taken = {id(b) for b in counted}
    in_round: list[set[str]] = []
    for items in groups:
        k = 0
        for msg, report in items:
            plan.first_kind.setdefault(report.agent_id, report.kind)
            plan.resources.setdefault(report.agent_id, None)
            if isinstance(report, Heartbeat):
                plan.beats.append(msg)
                if id(report) in taken:
                    plan.resources[report.agent_id] = resources_of(report)
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


async def _outcomes_many(
    s: ops.Scheduler,
    nc: Client,
    js: JetStreamContext,
    groups: list[list[tuple[Msg, Heartbeat | TaskOutcome]]],
    admitted: limits.Admission | None,
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
    try:
        beats = [r for items in groups for _, r in items if isinstance(r, Heartbeat)]
        plan = _plan(groups, counted_beats(admitted, beats))
        async with s.engine.begin() as conn:
            known = await seen_many(
                s, conn, plan.resources, plan.first_kind, plan.beating, plan.blocked
            )
    except Exception:  # Postgres away: leave them all for redelivery
        log.exception("reports.outcomes_failed")
        await retry_all(settler, [m for items in groups for m, _ in items])
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
            reports = ReportTasks(reports=[to_queue(rep) for _, rep in r])
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
        await retry_all(settler, [m for r in rounds for m, _ in r])
        return
    s.wakeups.matching()  # the agents that finished are idle now, committed
    for k, r in enumerate(rounds):
        if k >= len(answers):
            await retry_all(settler, [m for m, _ in r])
            continue
        for (msg, report), ok in zip(r, answers[k], strict=True):
            try:
                await answer_accepted(js, report, took=ok)
            except Exception:  # NATS away: the repeat answers again (`answer_accepted`)
                log.exception("reports.answer_failed")
                await settler.retry(msg)
                continue
            await (msg.ack() if ok else msg.term())


async def _handle(
    s: ops.Scheduler,
    nc: Client,
    js: JetStreamContext,
    msg: Msg,
    gate: Gate,
    settler: consumer.Settler,
    cut_off: dict[str, float],
) -> None:
    speaker = msg.subject.split(".")[2]
    if left := cut_off.get(speaker, 0.0):
        if not _is_outcome(msg.data):
            await msg.term()  # cut off for sending garbage: its presence does not count now
        elif (refused := unforwardable(speaker, msg.data)) is not None:
            # waiting out the cut-off cannot make it valid: refused now, not held
            await settler.refuse(msg, refused.code, refused.detail, violation=False)
        else:
            # a task's outcome is never dropped: it waits out the cut-off and then counts
            await msg.nak(delay=left)
        return
    await settler.run(msg, lambda: on_report(s, nc, js, msg.subject, msg.data, gate))


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
