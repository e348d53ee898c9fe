"""The health rules: a pure function of what was seen, the settings and the samples of earlier
assessments. Every issue carries what a remedy needs in its `evidence`.

    dependency_degraded:<service>  critical  its readiness failed (its Postgres or NATS); a
                                   warning when it did not answer at all
    stuck_tasks                    critical from `hub_stuck_tasks_critical` on, else warning:
                                   held (assigned, working) unchanged for `hub_stuck_task_after`
    offline_agents                 warning   a task held by an agent the scheduler has offline
                                   or does not know, not stuck yet (the scheduler's own sweep
                                   usually hands it back first)
    unhealthy_endpoints:<tier>     critical  every probed endpoint serving the tier unhealthy
                                   (a warning while the tier is routed to its fallback)
    high_failure_rate              warning   dead-lettered share of the tasks ended in the window
    queue_backlog                  warning   queued rose `hub_backlog_checks` times in a row and
                                   no agent is idle

The first implementation judged "offline agent with a task" from a list that never held such
an agent, and merge conflicts from `git diff --check` in its own directory; here both sides
come from the services that own them, and conflicts are reported by deliveries (`reports`).
"""

import itertools
from datetime import datetime
from typing import Any, Final

from agentcom_common.contracts.agent import AgentState, AgentView
from agentcom_common.contracts.alert import Severity
from agentcom_common.contracts.health import HealthIssue, IssueCategory
from agentcom_common.contracts.llm import EndpointList
from agentcom_common.contracts.system import Health
from agentcom_common.contracts.task import TaskState, TaskView
from agentcom_hubfsm.health.gather import Seen
from agentcom_hubfsm.settings import HubSettings

C = IssueCategory
ENDED: Final = (TaskState.COMPLETED, TaskState.PARTIAL_PASS, TaskState.DEAD_LETTER)
NAMES: Final = {"llm": "llm-registry"}  # RPC group -> service name, as people know it
MAX_SAMPLES: Final = 1000  # an assessment every few ms (tests) must not grow the row forever
Sample = dict[str, Any]  # {"at": iso, "queued": n, "idle": n | None, "ended": {state: n}}


def _issue(
    key: str, category: IssueCategory, severity: Severity, summary: str, now: datetime, **ev: Any
) -> HealthIssue:
    source = {"stuck_tasks": "queue", "offline_agents": "scheduler"}.get(key, "hub")
    return HealthIssue(
        key=key,
        source=ev.pop("source", source),
        severity=severity,
        category=category,
        summary=summary,
        evidence=ev,
        seen_at=now,
    )


def _dependencies(seen: Seen, now: datetime) -> list[HealthIssue]:
    found: list[HealthIssue] = []
    for service, ready in seen.ready.items():
        name = NAMES.get(service, service)
        if isinstance(ready, Health) and ready.ready:
            continue
        # its Postgres or NATS failing is critical; no answer at all is a warning: the
        # service may not be deployed or be restarting (a hub run alone would heal forever)
        severity = Severity.CRITICAL
        if isinstance(ready, Health):
            failed = [f"{c.name} ({c.detail or 'failed'})" for c in ready.checks if not c.ok]
            summary = f"{name} is not ready: {', '.join(failed) or 'not ready'}"
            evidence: dict[str, Any] = {"checks": [c.model_dump(mode="json") for c in ready.checks]}
        else:
            summary, evidence = f"{name} did not answer: {ready}", {"error": ready}
            severity = Severity.WARNING
        found.append(
            _issue(
                f"dependency_degraded:{name}",
                C.DEPENDENCY_DEGRADED,
                severity,
                summary,
                now,
                source=name,
                service=name,
                **evidence,
            )
        )
    return found


def _holder(task: TaskView, agents: dict[str, AgentView] | None) -> dict[str, Any]:
    agent = None if agents is None or task.assigned_to is None else agents.get(task.assigned_to)
    return {
        "task_id": task.id,
        "state": task.state.value,
        "generation": task.generation,
        "retry_count": task.retry_count,
        "max_retries": task.max_retries,
        "updated_at": task.updated_at.isoformat(),
        "agent_id": task.assigned_to,
        # None: the scheduler did not answer; "unknown": it does not know the agent (removed)
        "agent_state": None if agents is None else (agent.state.value if agent else "unknown"),
        "supervisor": agent.supervisor if agent else None,
    }


def _held(seen: Seen, s: HubSettings, now: datetime) -> list[HealthIssue]:
    if seen.held is None:
        return []
    agents = None if seen.agents is None else {a.id: a for a in seen.agents}
    stuck_before = now - s.hub_stuck_task_after
    stuck = [_holder(t, agents) for t in seen.held if t.updated_at < stuck_before]
    stuck_ids = {t["task_id"] for t in stuck}
    gone = {AgentState.OFFLINE.value, "unknown"}
    # one assessment's grace: the scheduler hands such a task back the moment it sees the agent
    # go, so only one still held an interval later is a disagreement worth reporting
    orphan_before = now - s.hub_health_interval
    orphans = [
        h
        for t in seen.held
        if t.id not in stuck_ids
        and t.updated_at < orphan_before
        and (h := _holder(t, agents))["agent_state"] in gone
    ]
    found: list[HealthIssue] = []
    if stuck:
        critical = len(stuck) >= s.hub_stuck_tasks_critical
        found.append(
            _issue(
                "stuck_tasks",
                C.STUCK_TASKS,
                Severity.CRITICAL if critical else Severity.WARNING,
                f"{len(stuck)} task(s) held unchanged for over {s.hub_stuck_task_after}",
                now,
                tasks=stuck,
            )
        )
    if orphans:
        found.append(
            _issue(
                "offline_agents",
                C.OFFLINE_AGENTS,
                Severity.WARNING,
                f"{len(orphans)} task(s) held by agents that are offline or gone",
                now,
                tasks=orphans,
            )
        )
    return found


def _endpoints(listed: EndpointList | None, now: datetime) -> list[HealthIssue]:
    if listed is None:
        return []
    found: list[HealthIssue] = []
    for tier in listed.tiers:
        serving = [e for e in listed.endpoints if tier in e.tiers and e.shared]
        if not serving or any(e.health != "unhealthy" for e in serving):
            continue
        until = listed.fallbacks.get(tier)
        summary = f"every endpoint of tier {tier} is unhealthy ({len(serving)})"
        if until is not None:
            summary += f"; routed to its fallback until {until.isoformat()}"
        found.append(
            _issue(
                f"unhealthy_endpoints:{tier}",
                C.UNHEALTHY_ENDPOINTS,
                Severity.WARNING if until is not None else Severity.CRITICAL,
                summary,
                now,
                source="llm-registry",
                tier=tier,
                endpoints=[{"id": e.id, "last_error": e.last_error} for e in serving],
                fallback_until=None if until is None else until.isoformat(),
            )
        )
    return found


def sample(seen: Seen, now: datetime) -> Sample | None:
    if seen.stats is None:
        return None
    idle = None
    if seen.agents is not None:
        idle = sum(a.state is AgentState.IDLE for a in seen.agents)
    return {
        "at": now.isoformat(),
        "queued": seen.stats.by_state.get(TaskState.QUEUED.value, 0),
        "idle": idle,
        "ended": {s.value: seen.stats.by_state.get(s.value, 0) for s in ENDED},
    }


def _trends(samples: list[Sample], s: HubSettings, now: datetime) -> list[HealthIssue]:
    found: list[HealthIssue] = []
    if len(samples) >= 2:
        first, last = samples[0]["ended"], samples[-1]["ended"]
        delta = {k: max(0, last[k] - first.get(k, 0)) for k in last}
        ended = sum(delta.values())
        failed = delta.get(TaskState.DEAD_LETTER.value, 0)
        pct = 100.0 * failed / ended if ended else 0.0
        if ended >= s.hub_failure_min_tasks and pct > s.hub_failure_rate_pct:
            found.append(
                _issue(
                    "high_failure_rate",
                    C.HIGH_FAILURE_RATE,
                    Severity.WARNING,
                    f"{failed} of {ended} tasks ended in the last {s.hub_failure_window} "
                    f"were dead-lettered ({pct:.0f}%)",
                    now,
                    source="queue",
                    ended=delta,
                    failure_rate_pct=round(pct, 1),
                )
            )
    recent = samples[-(s.hub_backlog_checks + 1) :]
    queued = [x["queued"] for x in recent]
    rising = len(recent) > s.hub_backlog_checks and all(
        b > a for a, b in itertools.pairwise(queued)
    )
    if rising and recent[-1]["idle"] == 0:
        found.append(
            _issue(
                "queue_backlog",
                C.QUEUE_BACKLOG,
                Severity.WARNING,
                f"queued tasks rose {s.hub_backlog_checks} assessments in a row "
                f"({' -> '.join(map(str, queued))}) and no agent is idle",
                now,
                source="queue",
                queued=queued,
            )
        )
    return found


def judge(
    seen: Seen, s: HubSettings, now: datetime, samples: list[Sample]
) -> tuple[list[HealthIssue], list[Sample]]:
    """The issues, and the samples to keep (those inside the failure window, this one added)."""
    kept = [x for x in samples if datetime.fromisoformat(x["at"]) > now - s.hub_failure_window]
    if (this := sample(seen, now)) is not None:
        kept.append(this)
    issues = [
        *_dependencies(seen, now),
        *_held(seen, s, now),
        *_endpoints(seen.endpoints, now),
        *_trends(kept, s, now),
    ]
    return issues, kept[-MAX_SAMPLES:]
