"""The remedies table: category -> ordered actions. An action plans `Step`s from the issue's
evidence (one per target) and never acts itself: the run (`healing.run`) decides whether each
step acts (rate limit, dry run) and records it. So every action is dry-run capable by
construction, and idempotent through the calls it makes:

    requeue_stuck_task      queue `requeue` with `count_retry` at the task's generation: a
                            second ask finds it queued or dead-lettered and changes nothing
    restart_silent_sidecar  scheduler `restart`, supervised sidecars only; at most once per
                            agent per window (the run's rate limit)
    requeue_orphaned_task   queue `requeue` at the task's generation, for its holder only
    reprobe_endpoints       llm-registry `check` after each wait of the backoff, until one
                            endpoint of the tier is healthy (else the step fails)
    route_to_fallback       only when the re-probe did not bring one back: llm-registry
                            `fallback` for `hub_healing_fallback_for`
    open_diagnostic_task    queue `submit` of an urgent task with a `client_key` made from the
                            issue's key and report time: a repeat returns the first task
    alert                   log a warning; the `healing.acted` event is the alert
"""

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Any, Final

from nats.aio.client import Client

from agentcom_common import micro
from agentcom_common.contracts.agent import AgentView, RestartAgent
from agentcom_common.contracts.health import HealthIssue, IssueCategory, Outcome
from agentcom_common.contracts.llm import CheckEndpoint, EndpointHealth, RouteFallback, TierFallback
from agentcom_common.contracts.task import Lane, RequeueTask, SubmitTask, TaskView
from agentcom_common.errors import AgentcomError

log = logging.getLogger(__name__)
C = IssueCategory
GONE: Final = frozenset({"offline", "unknown"})  # agent states (judge._holder) that hold no work


class RemedyFailedError(AgentcomError):
    """A step that ran and did not fix what it was for (no endpoint came back)."""

    default_code = "remedy_failed"


@dataclass(frozen=True, slots=True)
class Context:
    nc: Client
    timeout: float
    backoff: tuple[timedelta, ...]
    fallback_for: timedelta


@dataclass(frozen=True, slots=True)
class Step:
    target: str
    detail: str  # what it does (and, dry-run, what it would do); or why it is skipped
    do: Callable[[], Awaitable[str]] | None  # None: skipped; else what it did, as a sentence
    evidence: dict[str, Any] = field(default_factory=dict[str, Any])


Plan = Callable[[Context, HealthIssue, Mapping[str, Outcome]], list[Step]]


@dataclass(frozen=True, slots=True)
class Remedy:
    name: str
    plan: Plan  # gets the outcomes of the issue's earlier actions, by name


def _tasks(issue: HealthIssue) -> list[dict[str, Any]]:
    return list(issue.evidence.get("tasks", []))


def _requeue(ctx: Context, t: dict[str, Any], *, count_retry: bool, why: str) -> Step:
    async def do() -> str:
        body = RequeueTask(
            task_id=t["task_id"],
            generation=t["generation"],
            reason=why,
            agent_id=t["agent_id"],
            count_retry=count_retry,
        )
        after = await micro.call(ctx.nc, "queue", "requeue", body, TaskView, timeout=ctx.timeout)
        return f"task {after.id} is {after.state.value} (retries {after.retry_count}/{after.max_retries})"

    if count_retry and t["retry_count"] >= t["max_retries"]:
        what = f"fail task {t['task_id']} for good (dead-letter: its retries are used up)"
    elif count_retry:
        what = f"requeue task {t['task_id']}, counting retry {t['retry_count'] + 1}"
    else:
        what = f"hand task {t['task_id']} back to the queue (no retry counted)"
    return Step(t["task_id"], f"{what}: {why}", do, t)


def requeue_stuck(ctx: Context, issue: HealthIssue, _before: Mapping[str, Outcome]) -> list[Step]:
    steps: list[Step] = []
    for t in _tasks(issue):
        if t["agent_state"] is None:
            why = f"the scheduler did not say whether agent {t['agent_id']} is online"
            steps.append(Step(t["task_id"], f"left as it is: {why}", None, t))
        elif t["agent_state"] in GONE:
            why = f"stuck {t['state']} since {t['updated_at']}; agent {t['agent_id']} is {t['agent_state']}"
            steps.append(_requeue(ctx, t, count_retry=True, why=why))
    return steps


def restart_silent(ctx: Context, issue: HealthIssue, _before: Mapping[str, Outcome]) -> list[Step]:
    steps: dict[str, Step] = {}
    for t in _tasks(issue):
        agent = t["agent_id"]
        if t["agent_state"] is None or t["agent_state"] in GONE or agent in steps:
            continue
        if t["supervisor"] == "none":
            why = f"its sidecar runs without a supervisor: a restart would stop it for good (task {t['task_id']} waits)"
            steps[agent] = Step(agent, f"not restarted: {why}", None, t)
            continue

        async def do(agent_id: str = agent) -> str:
            body = RestartAgent(agent_id=agent_id)
            await micro.call(ctx.nc, "scheduler", "restart", body, AgentView, timeout=ctx.timeout)
            return f"asked the sidecar of {agent_id} to restart"

        detail = f"ask the sidecar of {agent} to restart: online but silent on task {t['task_id']} since {t['updated_at']}"
        steps[agent] = Step(agent, detail, do, t)
    return list(steps.values())


def requeue_orphaned(
    ctx: Context, issue: HealthIssue, _before: Mapping[str, Outcome]
) -> list[Step]:
    return [
        _requeue(ctx, t, count_retry=False, why=f"its agent {t['agent_id']} is {t['agent_state']}")
        for t in _tasks(issue)
    ]


def reprobe(ctx: Context, issue: HealthIssue, _before: Mapping[str, Outcome]) -> list[Step]:
    tier, ids = issue.evidence["tier"], [e["id"] for e in issue.evidence["endpoints"]]
    waits = [w.total_seconds() for w in ctx.backoff]

    async def do() -> str:
        for n, wait in enumerate(waits, 1):
            await asyncio.sleep(wait)  # the backoff itself: a dead endpoint needs time to return
            for endpoint_id in ids:
                body = CheckEndpoint(endpoint_id=endpoint_id)
                got = await micro.call(
                    ctx.nc, "llm", "check", body, EndpointHealth, timeout=ctx.timeout
                )
                if got.health == "healthy":
                    return f"endpoint {endpoint_id} of tier {tier} is healthy again (probe {n})"
        raise RemedyFailedError(
            f"no endpoint of tier {tier} recovered after {len(waits)} probes ({', '.join(f'{w:g}s' for w in waits)})"
        )

    detail = f"re-probe {', '.join(ids)} after waits of {', '.join(f'{w:g}s' for w in waits)}"
    return [Step(tier, detail, do, issue.evidence)]


def fallback(ctx: Context, issue: HealthIssue, before: Mapping[str, Outcome]) -> list[Step]:
    if before.get("reprobe_endpoints") in ("done", "skipped"):
        return []  # an endpoint came back (or another run is on it): nothing to route around
    tier, seconds = issue.evidence["tier"], ctx.fallback_for.total_seconds()

    async def do() -> str:
        body = RouteFallback(tier=tier, seconds=seconds, reason=issue.summary[:500])
        moved = await micro.call(ctx.nc, "llm", "fallback", body, TierFallback, timeout=ctx.timeout)
        until = moved.until.isoformat() if moved.until else "now"
        return f"tier {tier} routed to classes {', '.join(moved.classes)} until {until}"

    detail = f"if no endpoint recovers, route tier {tier} to the next tier's classes for {ctx.fallback_for}"
    return [Step(tier, detail, do, issue.evidence)]


def _diagnosis(issue: HealthIssue) -> str:
    ev = issue.evidence
    if issue.category is C.CI_FAILING:
        check = ev.get("job") or ev.get("check") or "a check"
        at = f" at {ev['sha']}" if ev.get("sha") else ""
        head = (
            f"The default branch {ev.get('branch', '?')} of {ev.get('repo', '?')} fails CI "
            f"({check}{at}). Find why and make it pass."
        )
        if ev.get("url"):
            head += f" The failing run: {ev['url']}"
        tail = ev.get("log_tail", "")
        return f"{head}\n\nThe failing job's log tail:\n{tail}" if tail else head
    files = ", ".join(ev.get("files", [])) or "(not listed)"
    return (
        f"Branch {ev.get('branch', '?')} of {ev.get('repo', '?')} conflicts with "
        f"{ev.get('base', 'its base')}. Merge the base in and resolve the conflicts in: {files}."
    )


def diagnostic_task(ctx: Context, issue: HealthIssue, _before: Mapping[str, Outcome]) -> list[Step]:
    ev = issue.evidence
    body = SubmitTask(
        description=f"{_diagnosis(issue)}\n\n(Opened by the hub's healing: {issue.summary})"[
            :10_000
        ],
        priority=Lane.URGENT,
        repo=ev.get("repo") or None,
        branch=ev.get("branch") or None,
        metadata={"source": "healing", "issue": issue.key, "category": issue.category.value},
        client_key=f"healing:{issue.key}:{issue.seen_at.isoformat()}"[:200],
    )

    async def do() -> str:
        made = await micro.call(ctx.nc, "queue", "submit", body, TaskView, timeout=ctx.timeout)
        return f"urgent task {made.id} opened: {issue.summary}"[:2000]

    return [Step(issue.key, f"open an urgent task for an agent to fix it: {issue.summary}", do, ev)]


def alert(_ctx: Context, issue: HealthIssue, _before: Mapping[str, Outcome]) -> list[Step]:
    async def do() -> str:
        log.warning(
            "healing.alert",
            extra={
                "issue": issue.key,
                "summary": issue.summary,
                "evidence": json.dumps(issue.evidence)[:2000],
                "runbook": issue.runbook,
            },
        )
        return f"alerted (no remedy is safe for this; see {issue.runbook}): {issue.summary}"

    return [Step(issue.key, f"log and alert only: {issue.summary}", do, issue.evidence)]


REMEDIES: Final = MappingProxyType[IssueCategory, tuple[Remedy, ...]](
    {
        C.STUCK_TASKS: (
            Remedy("requeue_stuck_task", requeue_stuck),
            Remedy("restart_silent_sidecar", restart_silent),
        ),
        C.OFFLINE_AGENTS: (Remedy("requeue_orphaned_task", requeue_orphaned),),
        C.UNHEALTHY_ENDPOINTS: (
            Remedy("reprobe_endpoints", reprobe),
            Remedy("route_to_fallback", fallback),
        ),
        C.MERGE_CONFLICT: (Remedy("open_diagnostic_task", diagnostic_task),),
        C.CI_FAILING: (Remedy("open_diagnostic_task", diagnostic_task),),
        C.DEPENDENCY_DEGRADED: (Remedy("alert", alert),),
        C.HIGH_FAILURE_RATE: (Remedy("alert", alert),),
        C.QUEUE_BACKLOG: (Remedy("alert", alert),),
    }
)
# the order issues are healed in (the first implementation's): work first, then the model tier
ORDER: Final = tuple(REMEDIES)
