"""The scalability analysis contemplation shows the model: a pure function of what the hub has
of its own (no decision, no I/O here; `context` gathers the inputs).

- queue depth trend: the queued counts the health monitor samples (`hub.health.samples`), first
  and last, and their change per hour;
- wait latency: how long the queued tasks have waited so far (p50, p95, max);
- run latency: submission to end of the recently completed tasks (p50, p95), which is wait and
  run together: the queue's task view carries no start time, so that is what our data says;
- agent utilisation: the share of agents not offline that hold a task (assigned or working);
- endpoint saturation: LLM endpoints unhealthy or with an open circuit, tiers on fallback;
- cost per completed task: the hub's goals' model cost over their completed tasks.

A part whose data is missing (a service did not answer) is None and the text says so.
"""

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from agentcom_common.contracts.agent import AgentState, AgentView
from agentcom_common.contracts.llm import EndpointList
from agentcom_common.contracts.task import TaskView

Sample = dict[str, Any]  # `health.judge.Sample`: {"at": iso, "queued": n, ...}


@dataclass(frozen=True, slots=True)
class Percentiles:
    n: int
    p50: float
    p95: float
    max: float


@dataclass(frozen=True, slots=True)
class Scalability:
    queue_first: int | None = None
    queue_last: int | None = None
    queue_per_hour: float | None = None  # change of the queued count per hour
    samples: int = 0
    wait_s: Percentiles | None = None
    turnaround_s: Percentiles | None = None
    agents: int | None = None  # not offline
    agents_busy: int | None = None
    utilisation: float | None = None
    endpoints: int | None = None
    endpoints_saturated: int | None = None
    fallbacks: int | None = None
    completed_tasks: int = 0
    cost_usd: float = 0.0
    cost_per_task_usd: float | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        def pct(p: Percentiles | None) -> str:
            return (
                "no data"
                if p is None
                else f"p50 {p.p50:.1f}s, p95 {p.p95:.1f}s, max {p.max:.1f}s over {p.n}"
            )

        trend = (
            "no samples"
            if self.queue_first is None
            else f"{self.queue_first} -> {self.queue_last} queued over {self.samples} samples"
            + (f" ({self.queue_per_hour:+.1f}/hour)" if self.queue_per_hour is not None else "")
        )
        util = (
            "no data (scheduler not answering)"
            if self.agents is None
            else f"{self.agents_busy} of {self.agents} agents busy"
            + (f" ({self.utilisation:.0%})" if self.utilisation is not None else "")
        )
        sat = (
            "no data (llm-registry not answering)"
            if self.endpoints is None
            else f"{self.endpoints_saturated} of {self.endpoints} endpoints unhealthy or open, "
            f"{self.fallbacks} tiers on fallback"
        )
        cost = (
            "no completed tasks yet"
            if self.cost_per_task_usd is None
            else f"${self.cost_per_task_usd:.4f} per completed task "
            f"(${self.cost_usd:.2f} over {self.completed_tasks})"
        )
        return "\n".join(
            (
                f"- queue depth trend: {trend}",
                f"- wait latency (queued tasks, so far): {pct(self.wait_s)}",
                f"- run latency (submitted to completed): {pct(self.turnaround_s)}",
                f"- agent utilisation: {util}",
                f"- endpoint saturation: {sat}",
                f"- cost: {cost}",
            )
        )


def percentiles(values: Sequence[float]) -> Percentiles | None:
    """Nearest-rank p50 and p95."""
    if not values:
        return None
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))]

    return Percentiles(len(ordered), rank(0.50), rank(0.95), ordered[-1])


def analyse(
    now: datetime,
    *,
    samples: Sequence[Sample],
    queued: Sequence[TaskView] | None,
    completed: Sequence[TaskView] | None,
    agents: Sequence[AgentView] | None,
    endpoints: EndpointList | None,
    goal_cost_usd: float,
    goal_tasks_done: int,
) -> Scalability:
    depth = [(datetime.fromisoformat(s["at"]), int(s["queued"])) for s in samples]
    per_hour = None
    if len(depth) >= 2 and (hours := (depth[-1][0] - depth[0][0]).total_seconds() / 3600) > 0:
        per_hour = (depth[-1][1] - depth[0][1]) / hours
    live = None if agents is None else [a for a in agents if a.state is not AgentState.OFFLINE]
    busy = None
    if live is not None:
        busy = sum(a.state in (AgentState.ASSIGNED, AgentState.WORKING) for a in live)
    saturated = None
    if endpoints is not None:
        saturated = sum(e.health == "unhealthy" or e.circuit == "open" for e in endpoints.endpoints)
    return Scalability(
        queue_first=depth[0][1] if depth else None,
        queue_last=depth[-1][1] if depth else None,
        queue_per_hour=per_hour,
        samples=len(depth),
        wait_s=None
        if queued is None
        else percentiles([(now - t.created_at).total_seconds() for t in queued]),
        turnaround_s=None
        if completed is None
        else percentiles([(t.updated_at - t.created_at).total_seconds() for t in completed]),
        agents=None if live is None else len(live),
        agents_busy=busy,
        utilisation=None if not live or busy is None else busy / len(live),
        endpoints=None if endpoints is None else len(endpoints.endpoints),
        endpoints_saturated=saturated,
        fallbacks=None if endpoints is None else len(endpoints.fallbacks),
        completed_tasks=goal_tasks_done,
        cost_usd=goal_cost_usd,
        cost_per_task_usd=goal_cost_usd / goal_tasks_done if goal_tasks_done else None,
    )
