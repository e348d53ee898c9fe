"""Task contracts: the submit request, the task view, claims, reports and task events.

Limits are part of the contract (lengths, list sizes, enum values) so HTTP and NATS refuse the
same bad input with the same field name.
"""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, cast

from pydantic import Field, StringConstraints, field_validator

from agentcom_common.contracts.base import Contract, Request

TaskId = Annotated[str, StringConstraints(pattern=r"^task-[0-9a-f]{16}$")]
AgentId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Capability = Annotated[str, StringConstraints(min_length=1, max_length=64)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=500)]


class Lane(StrEnum):
    """Priority lanes, most urgent first; FIFO inside a lane."""

    URGENT = "urgent"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


LANE_ORDER: dict[Lane, int] = {lane: rank for rank, lane in enumerate(Lane)}


class Tier(StrEnum):
    TRIVIAL = "trivial"
    STANDARD = "standard"
    COMPLEX = "complex"


class TaskState(StrEnum):
    """The nine states of DESIGN's task machine; values are the DB and wire strings."""

    WAITING = "waiting"
    QUEUED = "queued"
    ASSIGNED = "assigned"
    WORKING = "working"
    COMPLETED = "completed"
    PARTIAL_PASS = "partial_pass"
    FAILED = "failed"
    DEAD_LETTER = "dead_letter"
    CANCELLED = "cancelled"


class FileHint(Contract):
    path: Annotated[str, StringConstraints(min_length=1, max_length=1000)]
    reason: Annotated[str, StringConstraints(max_length=500)] = ""


class FileExists(Contract):
    type: Literal["file_exists"]
    path: Annotated[str, StringConstraints(min_length=1, max_length=1000)]


class TestPasses(Contract):
    type: Literal["test_passes"]
    command: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    timeout_s: int = Field(default=300, ge=1, le=3600)


class GitClean(Contract):
    """The checks left the work as the executor left it: the tree the sidecar will commit is
    the same after the other checks as before them (judged last; see docs/sidecar.md)."""

    type: Literal["git_clean"]


class CommandSucceeds(Contract):
    type: Literal["command_succeeds"]
    command: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    timeout_s: int = Field(default=300, ge=1, le=3600)


VerificationStep = Annotated[
    FileExists | TestPasses | GitClean | CommandSucceeds, Field(discriminator="type")
]


class SubmitTask(Request):
    description: Annotated[str, StringConstraints(min_length=1, max_length=10_000)]
    priority: Lane = Lane.NORMAL
    metadata: dict[str, Any] = Field(default_factory=dict[str, Any], max_length=50)
    max_retries: int = Field(default=3, ge=0, le=20)
    complete_by: datetime | None = None
    needed_capabilities: list[Capability] = Field(default_factory=list[str], max_length=20)
    repo: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = None
    branch: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    file_hints: list[FileHint] = Field(default_factory=list[FileHint], max_length=100)
    success_criteria: list[ShortText] = Field(default_factory=list[str], max_length=50)
    verification_steps: list[VerificationStep] = Field(
        default_factory=list[VerificationStep], max_length=20
    )
    complexity_tier: Tier | None = None
    depends_on: list[TaskId] = Field(
        default_factory=list[str], max_length=100, json_schema_extra={"uniqueItems": True}
    )
    goal_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    client_key: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None, description="Idempotency key: the same key twice returns the same task."
    )

    @field_validator("metadata")
    @classmethod
    def _runnable(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        # the keys a sidecar acts on: refused here, at submit, rather than by the agent that
        # claimed it (a wasted assignment, and a failure the submitter sees only later)
        if "command" in metadata:
            command: object = metadata["command"]
            parts = cast("list[object]", command) if isinstance(command, list) else None
            if not parts or not all(isinstance(part, str) and part for part in parts):
                raise ValueError(
                    "metadata.command must be a non-empty list of non-empty strings (an argv, "
                    'e.g. ["make", "test"])'
                )
        if "executor" in metadata and not isinstance(metadata["executor"], str):
            raise ValueError("metadata.executor must be a string (an executor name)")
        if "same_branch" in metadata and not isinstance(metadata["same_branch"], bool):
            raise ValueError(
                "metadata.same_branch must be true or false (true: continue the task's `branch`)"
            )
        return metadata


class Complexity(Contract):
    tier: Tier
    source: Literal["explicit", "inferred"]
    inferred_tier: Tier | None
    confidence: float = Field(ge=0, le=1)
    reasons: list[str]


class TaskView(Contract):
    id: str
    state: TaskState
    priority: Lane
    description: str
    generation: int
    retry_count: int
    max_retries: int
    assigned_to: str | None
    complete_by: datetime | None
    needed_capabilities: list[str]
    repo: str | None = Field(description="The repo's key, as matching compares it.")
    repo_url: str | None = Field(
        default=None,
        description="The repo's URL as submitted (or as the inherited repo was added): what a "
        "sidecar with no configured repos clones. None on tasks from before it was kept.",
    )
    branch: str | None
    success_criteria: list[str]
    verification_steps: list[VerificationStep]
    complexity: Complexity
    depends_on: list[str]
    goal_id: str | None
    metadata: dict[str, Any]
    last_error: str | None
    blocked_reason: str | None
    result: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    waiting_reason: str | None = Field(
        default=None,
        description="`GET /api/tasks/{id}` of a queued task: why no agent is taking it "
        "(no online agent has its capabilities, serves its repo, or can run it; all busy; "
        "retry backoff; repo paused). None otherwise.",
    )


class TaskTransition(Contract):
    """One row of a task's history; also the body of every `agentcom.evt.task.*` event."""

    task_id: str
    from_state: TaskState | None
    to_state: TaskState
    generation: int
    reason: str
    actor: str
    at: datetime
    goal_id: str | None = Field(
        default=None,
        description="The task's goal (`SubmitTask.goal_id`), so a goal's events can be "
        "followed without reading the task; null for a task without one. The queue always "
        "sets it; the default only reads events written before it existed.",
    )
    risk_tier: Literal[1, 2, 3] | None = Field(
        default=None,
        description="`completed` / `partial_pass` of a delivered change: its risk tier "
        "(`result.delivery.risk.tier`), so a tier-3 change raises an alert without a read.",
    )


class ClaimTask(Request):
    agent_id: AgentId
    capabilities: list[Capability] = Field(default_factory=list[str], max_length=50)
    repos: list[Annotated[str, StringConstraints(min_length=1, max_length=500)]] = Field(
        default_factory=list[str], max_length=50, description="Empty: any repo."
    )


class Claimed(Contract):
    task: TaskView | None


Reported = Literal["accepted", "completed", "partial_pass", "failed"]
"""What a `ReportTask` can say of an assignment."""


class ReportTask(Request):
    """An agent's report on its assignment; `generation` fences out stale assignments."""

    task_id: TaskId
    agent_id: AgentId
    generation: int = Field(ge=1)
    outcome: Reported
    result: dict[str, Any] = Field(default_factory=dict[str, Any], max_length=50)
    error: Annotated[str, StringConstraints(max_length=4000)] | None = None


class RequeueTask(Request):
    """Hand an assignment back (agent offline, never accepted, past deadline, refused)."""

    task_id: TaskId
    generation: int = Field(ge=1)
    reason: ShortText
    agent_id: AgentId | None = Field(
        default=None, description="If set, the task must be assigned to it (else `wrong_agent`)."
    )
    unaccepted_only: bool = Field(
        default=False,
        description="Hand it back only while it is `assigned` (never accepted); once the agent's "
        "`accepted` has applied, refused with `already_accepted`: the agent may be running it.",
    )
    count_retry: bool = Field(
        default=False,
        description="Count the hand-back as a failed attempt, as a `failed` report would: the "
        "task is retried (after the backoff) while retries remain, else dead-lettered. For a "
        "task whose agent is gone while it was stuck (the hub's healing).",
    )


class CancelTask(Request):
    """Body of `agentcom.rpc.queue.cancel`: the same move as `POST /api/tasks/{id}/cancel`."""

    task_id: TaskId


class StatsRequest(Request):
    pass


class ListTasks(Request):
    """Body of `agentcom.rpc.queue.list`: one page of tasks, newest first."""

    state: TaskState | None = None
    assigned_to: AgentId | None = None
    goal_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    cursor: Annotated[str, StringConstraints(max_length=20)] | None = None
    limit: int = Field(default=100, ge=1, le=500)


class TaskList(Contract):
    """Reply of `agentcom.rpc.queue.list`; pass `next_cursor` back for the next page."""

    tasks: list[TaskView]
    next_cursor: str | None = None


class QueueStats(Contract):
    by_state: dict[str, int]
    queued_by_lane: dict[str, int]


# batch variants: one RPC and one transaction for many tasks (the single ones stay as they are)

BATCH_LIMIT = 1000


class SubmitTasks(Request):
    """Submit many tasks in one transaction; the reply lists them in the same order."""

    tasks: list[SubmitTask] = Field(min_length=1, max_length=BATCH_LIMIT)


class TaskRef(Contract):
    """A compact acknowledgement of one task of a batch."""

    id: str
    state: TaskState
    generation: int


class SubmittedTasks(Contract):
    tasks: list[TaskRef]


class ClaimTasks(Request):
    """Claim up to `limit` tasks at once: each is assigned as a single claim would assign it."""

    agent_id: AgentId
    capabilities: list[Capability] = Field(default_factory=list[str], max_length=50)
    repos: list[Annotated[str, StringConstraints(min_length=1, max_length=500)]] = Field(
        default_factory=list[str], max_length=50, description="Empty: any repo."
    )
    limit: int = Field(default=10, ge=1, le=BATCH_LIMIT)


class ClaimedTasks(Contract):
    """The tasks assigned, best first (lane, then age); empty when none is eligible."""

    tasks: list[TaskView]


class ClaimForAgents(Request):
    """One task each for several agents alike (same capabilities and repos), in one round trip.

    The best task (lane, then age) goes to the first agent, the next to the second, and so on;
    fewer tasks than agents when fewer are eligible. Each is assigned as a single claim would.
    """

    agent_ids: list[AgentId] = Field(min_length=1, max_length=BATCH_LIMIT)
    capabilities: list[Capability] = Field(default_factory=list[str], max_length=50)
    repos: list[Annotated[str, StringConstraints(min_length=1, max_length=500)]] = Field(
        default_factory=list[str], max_length=50, description="Empty: any repo."
    )
    exclude_tasks: list[TaskId] = Field(
        default_factory=list[str],
        max_length=BATCH_LIMIT,
        description="Tasks not to offer: the scheduler names those the agent refused for good.",
    )


class ReportTasks(Request):
    """Many reports in one transaction; each is applied (or refused) as a single report is."""

    reports: list[ReportTask] = Field(min_length=1, max_length=BATCH_LIMIT)


class ReportOutcome(Contract):
    """One report's result: the task's state after it, or the error a single report would give."""

    task_id: str
    ok: bool
    state: TaskState | None = None
    generation: int | None = None
    error_code: str | None = None
    error: str | None = None


class ReportedTasks(Contract):
    results: list[ReportOutcome]


class ExplainWait(Request):
    """Body of `agentcom.rpc.scheduler.explain`: why is nobody taking this queued task?"""

    task_id: TaskId
    needed_capabilities: list[Capability] = Field(default_factory=list[str], max_length=20)
    repo: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = None


class WaitReason(Contract):
    """The scheduler's answer: `reason` None when an idle agent can take the task now."""

    reason: str | None
    able: list[str] = Field(
        default_factory=list[str], description="Online agents that may take it (idle or busy)."
    )
