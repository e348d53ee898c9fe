"""Health and healing contracts: what the hub finds wrong with the running system
(`GET /api/hub/health`) and what its healing runs did about it (`GET /api/hub/healing`, the
bodies of `agentcom.evt.hub.healing.*`).

An issue is a fact with its evidence (`source`: who saw it; `category`: which remedies apply),
never a guess: every field a remedy acts on is in `evidence`.
"""

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, computed_field

from agentcom_common.contracts.alert import Severity
from agentcom_common.contracts.base import Contract


class IssueCategory(StrEnum):
    """What is wrong; the remedies table of the hub's healing is keyed by it."""

    STUCK_TASKS = "stuck_tasks"  # assigned or working past a threshold
    OFFLINE_AGENTS = "offline_agents"  # an agent offline (or gone) while holding a task
    UNHEALTHY_ENDPOINTS = "unhealthy_endpoints"  # every endpoint of a tier unhealthy
    HIGH_FAILURE_RATE = "high_failure_rate"  # many of the tasks that ended failed
    QUEUE_BACKLOG = "queue_backlog"  # queued work grows and no idle agent could take it
    DEPENDENCY_DEGRADED = "dependency_degraded"  # a service, or its Postgres or NATS, not ready
    CI_FAILING = "ci_failing"  # a repo's default branch fails CI (reported from GitHub events)
    MERGE_CONFLICT = "merge_conflict"  # a goal's branch conflicts (reported by a delivery)


def runbook(category: IssueCategory) -> str:
    """The docs section on `category`: what healing does and what to do when it does not
    suffice (`docs/runbooks.md`; a test checks every category's section exists)."""
    return f"docs/runbooks.md#healing-{category.value}"


class HealthIssue(Contract):
    key: str = Field(
        description="Identifies the issue across assessments (`stuck_tasks`, "
        "`unhealthy_endpoints:standard`); an external report with the same key replaces it."
    )
    source: str = Field(description="Who saw it: `queue`, `scheduler`, `llm-registry`, `github`…")
    severity: Severity
    category: IssueCategory
    summary: str = Field(max_length=2000)
    evidence: dict[str, Any] = Field(default_factory=dict[str, Any])
    seen_at: datetime

    @computed_field(description="The runbook of its category: what healing does, what to do.")
    @property
    def runbook(self) -> str:
        return runbook(self.category)


class HealthReport(Contract):
    """The hub's latest assessment of the running system (`GET /api/hub/health`)."""

    assessed_at: datetime | None = Field(description="None: no assessment ran yet.")
    issues: list[HealthIssue]
    critical: int = Field(description="How many of `issues` are critical (they start healing).")
    healing_cooldown_until: datetime | None = Field(
        description="Healing does not start again before this (the last run's end + cooldown)."
    )
    healing_attempts: int = Field(description="Healing runs started in the attempt window.")
    healing_exhausted: bool = Field(
        description="The attempts in the window are used up: critical issues wait for a person "
        "or for the window to pass."
    )


Outcome = Literal["done", "skipped", "failed", "would_do"]
RunOutcome = Literal["running", "healed", "unresolved", "dry_run", "watchdog", "interrupted"]


class HealingAction(Contract):
    """One remedy applied (or, dry-run, described) to one issue; also the body of
    `agentcom.evt.hub.healing.acted`."""

    run_id: int
    category: IssueCategory
    action: str = Field(description="The remedy's name: `requeue_stuck_task`, `reprobe_endpoints`…")
    target: str = Field(description="What it acted on: a task id, an agent id, a tier…")
    outcome: Outcome
    detail: str = Field(description="What was done or, dry-run, what would be; or why not.")
    evidence: dict[str, Any] = Field(default_factory=dict[str, Any])
    dry_run: bool
    at: datetime

    @computed_field(description="The runbook of its category: what healing does, what to do.")
    @property
    def runbook(self) -> str:
        return runbook(self.category)


class HealingRun(Contract):
    """One stay in `healing`: the issues that started it and what was done."""

    id: int
    started_at: datetime
    ended_at: datetime | None
    outcome: RunOutcome
    dry_run: bool
    issues: list[HealthIssue]
    actions: list[HealingAction]
    report: str = Field(description="The run's summary, as its last history entry says it.")


class HealingPage(Contract):
    runs: list[HealingRun]
    next_cursor: str | None


class HealingStarted(Contract):
    """`agentcom.evt.hub.healing.started`: the hub entered healing for these issues."""

    run_id: int
    issues: list[HealthIssue]
    dry_run: bool
    at: datetime


class HealingEnded(Contract):
    """`agentcom.evt.hub.healing.ended`: a run finished (or its watchdog ended it: then
    `outcome` is `watchdog` and `severity` critical)."""

    run_id: int
    outcome: RunOutcome
    severity: Severity
    report: str
    actions: int
    at: datetime
