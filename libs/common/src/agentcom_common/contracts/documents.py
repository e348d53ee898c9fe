"""XML forms of the contracts, for where XML serves: prompts to models that follow XML structure
better than JSON, and their XML replies. Each document converts to and from the contract the
JSON path uses (`of(contract)`, `contract()`), so an XML reply becomes the very type a JSON reply
does; read them with `agentcom_common.safexml.read` (hardened), write them with `safexml.write`.

Free-form JSON values of a contract (a goal's stored plan, a task's metadata and result) travel
as JSON text inside their element: XML has no better spelling for "any object".
"""

import json
from datetime import datetime
from typing import Any, cast

from pydantic_xml import BaseXmlModel, attr, element, wrapped

from agentcom_common.contracts.hub import Autonomy, GoalState, GoalView, HubState, HubView
from agentcom_common.contracts.plan import Plan, PlannedTask
from agentcom_common.contracts.proposal import ProposalDraft
from agentcom_common.contracts.scan import ScanFinding, ScanResult, Severity
from agentcom_common.contracts.task import Lane, TaskState, TaskView, Tier

_JSON_FIELDS = ("file_hints", "verification_steps", "complexity", "metadata", "result")


def _items(tag: str, item: str) -> Any:
    """`<tag><item>..</item>...</tag>`: a list of strings."""
    return wrapped(tag, element(tag=item, default_factory=list[str]))


def _json(value: object) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def _unjson(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class PlannedTaskDocument(BaseXmlModel, tag="task"):
    key: str | None = attr(default=None)
    title: str = element()
    description: str = element()
    success_criteria: list[str] = _items("success_criteria", "criterion")
    verification: list[str] = _items("verification", "command")
    depends_on: list[str] = _items("depends_on", "ref")
    files: list[str] = _items("files", "file")
    new_files: list[str] = _items("new_files", "file")
    tier: Tier = element(default=Tier.STANDARD)
    estimated_tokens: int = element()
    estimated_usd: float = element(default=0.0)

    @classmethod
    def of(cls, task: PlannedTask) -> "PlannedTaskDocument":
        data = task.model_dump()
        data["depends_on"] = [str(ref) for ref in task.depends_on]
        return cls.model_validate(data)


class PlanDocument(BaseXmlModel, tag="plan"):
    summary: str = element(default="")
    tasks: list[PlannedTaskDocument] = element(default_factory=list[PlannedTaskDocument])

    @classmethod
    def of(cls, plan: Plan) -> "PlanDocument":
        return cls(summary=plan.summary, tasks=[PlannedTaskDocument.of(t) for t in plan.tasks])

    def contract(self) -> Plan:
        """The plan; a numeric `<ref>` becomes the task number, as in JSON (`PlannedTask`)."""
        return Plan.model_validate(self.model_dump())


class ProposalDocument(BaseXmlModel, tag="proposal"):
    title: str = element()
    problem: str = element()
    solution: str = element()
    rationale: str = element()
    why_now: str = element()
    why_not: str = element()
    impact: str = element()
    effort: str = element()
    dependencies: list[str] = _items("dependencies", "dependency")
    related_files: list[str] = _items("related_files", "file")
    success_criteria: list[str] = _items("success_criteria", "criterion")

    @classmethod
    def of(cls, draft: ProposalDraft) -> "ProposalDocument":
        return cls.model_validate(draft.model_dump())

    def contract(self) -> ProposalDraft:
        return ProposalDraft.model_validate(self.model_dump())


class ProposalsDocument(BaseXmlModel, tag="proposals"):
    """A contemplation cycle's answer: up to the cycle's cap of `<proposal>`s."""

    proposals: list[ProposalDocument] = element(default_factory=list[ProposalDocument])


class GoalDocument(BaseXmlModel, tag="goal"):
    id: str = attr()
    state: GoalState = attr()
    title: str = element()
    description: str = element(default="")
    success_criteria: list[str] = _items("success_criteria", "criterion")
    repo: str = element()
    priority: Lane = element()
    budget_tokens: int | None = element(default=None)
    budget_usd: float | None = element(default=None)
    autonomy: Autonomy = element()
    source: str = element()
    link: str | None = element(default=None)
    created_by: str = element()
    attempt: int = element()
    reason: str = element(default="")
    plan: str | None = element(default=None)  # JSON text
    plan_errors: list[str] = _items("plan_errors", "error")
    cost_tokens: int = element()
    cost_usd: float = element()
    tasks_done: int = element()
    tasks_total: int = element()
    created_at: datetime = element()
    updated_at: datetime = element()

    @classmethod
    def of(cls, goal: GoalView) -> "GoalDocument":
        data = goal.model_dump()
        data["plan"] = _json(goal.plan)
        return cls.model_validate(data)

    def contract(self) -> GoalView:
        data = self.model_dump()
        data["plan"] = _unjson(self.plan)
        return GoalView.model_validate(data)


class TaskDocument(BaseXmlModel, tag="task"):
    """A queue task. Its structured parts (file hints, verification steps, complexity,
    metadata, result) are JSON text: they are data for the sidecar, not prose for a model."""

    id: str = attr()
    state: TaskState = attr()
    priority: Lane = element()
    description: str = element()
    generation: int = element()
    retry_count: int = element()
    max_retries: int = element()
    assigned_to: str | None = element(default=None)
    complete_by: datetime | None = element(default=None)
    needed_capabilities: list[str] = _items("needed_capabilities", "capability")
    repo: str | None = element(default=None)
    repo_url: str | None = element(default=None)
    branch: str | None = element(default=None)
    file_hints: str = element()  # JSON text
    success_criteria: list[str] = _items("success_criteria", "criterion")
    verification_steps: str = element()  # JSON text
    complexity: str = element()  # JSON text
    depends_on: list[str] = _items("depends_on", "task")
    goal_id: str | None = element(default=None)
    metadata: str = element()  # JSON text
    last_error: str | None = element(default=None)
    blocked_reason: str | None = element(default=None)
    result: str | None = element(default=None)  # JSON text
    created_at: datetime = element()
    updated_at: datetime = element()
    waiting_reason: str | None = element(default=None)

    @classmethod
    def of(cls, task: TaskView) -> "TaskDocument":
        data = task.model_dump(mode="json")
        for name in _JSON_FIELDS:
            data[name] = _json(data[name])
        return cls.model_validate(data)

    def contract(self) -> TaskView:
        data = self.model_dump()
        for name in _JSON_FIELDS:
            data[name] = _unjson(cast("str | None", data[name]))
        return TaskView.model_validate(data)


class HubSnapshotDocument(BaseXmlModel, tag="hub"):
    """The hub brain as `GET /api/hub/state` shows it; `<seconds_in_state resting="1.5" .../>`."""

    state: HubState = attr()
    since: datetime = element()
    reason: str = element(default="")
    paused: bool = element()
    cycle: int = element()
    seconds_in_state: dict[str, float] = element(default_factory=dict[str, float])
    watchdog_at: datetime | None = element(default=None)
    work: str | None = element(default=None)
    leader: str | None = element(default=None)
    goals_pending: int = element()
    goals_active: int = element()

    @classmethod
    def of(cls, hub: HubView) -> "HubSnapshotDocument":
        data = hub.model_dump()
        data["seconds_in_state"] = {str(k): v for k, v in hub.seconds_in_state.items()}
        return cls.model_validate(data)

    def contract(self) -> HubView:
        return HubView.model_validate(self.model_dump())


class ScanFindingDocument(BaseXmlModel, tag="finding"):
    category: str = attr()
    severity: Severity = attr()
    fingerprint: str = attr()
    title: str = element()
    subject: str = element()
    files: list[str] = _items("files", "file")
    evidence: list[str] = _items("evidence", "line")


class ScanResultDocument(BaseXmlModel, tag="scan"):
    """A scan task's result: `<scan><languages>..</languages><finding ...>..</finding>...
    <skipped><scanner name="ruff">why</scanner></skipped></scan>`."""

    languages: list[str] = _items("languages", "language")
    findings: list[ScanFindingDocument] = element(default_factory=list[ScanFindingDocument])
    skipped: dict[str, str] = element(default_factory=dict[str, str])

    @classmethod
    def of(cls, result: ScanResult) -> "ScanResultDocument":
        return cls.model_validate(result.model_dump())

    def contract(self) -> ScanResult:
        findings = [ScanFinding.model_validate(f.model_dump()) for f in self.findings]
        return ScanResult(languages=self.languages, findings=findings, skipped=self.skipped)


class ReviewFindingDocument(BaseXmlModel, tag="finding"):
    """One finding of a model's review: what to do (`title`, verb first), what it is about
    (`subject`), the files, the evidence. The hub gives it its category and fingerprint."""

    severity: Severity = attr()
    title: str = element()
    subject: str = element()
    files: list[str] = _items("files", "file")
    evidence: list[str] = _items("evidence", "line")


class ReviewDocument(BaseXmlModel, tag="review"):
    """A model's review of a repo's recent diff: `<review><finding severity="..">..</finding>
    ...</review>`, `<review/>` for nothing worth doing."""

    findings: list[ReviewFindingDocument] = element(default_factory=list[ReviewFindingDocument])
