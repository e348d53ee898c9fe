"""Agent contracts: registration, the agent view, and the agent state machine's states."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import Field, StringConstraints

from agentcom_common.contracts.base import Contract, JsonObject, Request
from agentcom_common.contracts.delivery import DeliveryReport
from agentcom_common.contracts.task import TaskView

AgentName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
Capability = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class AgentState(StrEnum):
    OFFLINE = "offline"
    IDLE = "idle"
    ASSIGNED = "assigned"
    WORKING = "working"
    BLOCKED = "blocked"


class RegisterAgent(Request):
    name: AgentName | None = Field(
        default=None, description="Lowercase letters, digits and dashes; a Culture ship if unset."
    )
    capabilities: list[Capability] = Field(default_factory=list[str], max_length=50)
    repos: list[Annotated[str, StringConstraints(min_length=1, max_length=500)]] = Field(
        default_factory=list[str], max_length=50
    )


class AgentView(Contract):
    id: str
    state: AgentState
    capabilities: list[str]
    repos: list[str]
    token_id: str
    created_at: datetime
    updated_at: datetime
    last_seen: datetime | None = None
    resources: dict[str, object] | None = Field(
        default=None, description="cpu/ram/vram/load/host/gpus/models of its last heartbeat."
    )
    blocked_reason: str | None = Field(
        default=None, description="While `blocked`: why its sidecar cannot take work."
    )
    supervisor: str | None = Field(
        default=None,
        description="What runs its sidecar (systemd, pm2, none), from its last hello; a "
        "restart is refused when it is `none`.",
    )


class AgentRegistered(AgentView):
    token: str = Field(description="The agent's bearer token; shown in this reply only.")
    nats_user: str | None = Field(default=None, description="Its NATS user (= its id).")
    nats_password: str | None = Field(
        default=None, description="Its NATS password; shown in this reply only (stored hashed)."
    )


class AgentTransition(Contract):
    """A row of an agent's history; the body of every `agentcom.evt.agent.*` event."""

    agent_id: str
    from_state: AgentState | None
    to_state: AgentState
    reason: str
    at: datetime


class Hello(Contract):
    """First report after a sidecar (re)connects: what it is doing right now."""

    kind: Literal["hello"]
    agent_id: str
    task_id: str | None = None
    generation: int | None = None
    state: Literal["idle", "working", "recovering"] | None = None
    version: str | None = None
    supervisor: str | None = Field(default=None, description="systemd, pm2, or none.")


class GpuLoad(Contract):
    name: str
    memory_used_mb: float = Field(ge=0)
    memory_total_mb: float = Field(ge=0)
    utilization_percent: float | None = Field(default=None, ge=0, le=100)


class Heartbeat(Contract):
    """Sent every heartbeat interval; carries the host's load for the router."""

    kind: Literal["heartbeat"]
    agent_id: str
    cpu_percent: float | None = Field(default=None, ge=0, le=100)
    ram_percent: float | None = Field(default=None, ge=0, le=100)
    load: float | None = Field(default=None, ge=0)
    vram_percent: float | None = Field(default=None, ge=0, le=100)
    gpus: list[GpuLoad] = Field(default_factory=list[GpuLoad], max_length=16)
    host: str | None = Field(default=None, max_length=255, description="The agent's host name.")
    ollama_url: str | None = Field(default=None, max_length=500)
    models: list[str] = Field(
        default_factory=list[str], max_length=500, description="Models its local Ollama serves."
    )
    task_id: str | None = None
    blocked: str | None = Field(
        default=None,
        max_length=500,
        description="Why this agent cannot take work now (disk full, no executor, workspaces "
        "unwritable); None when it can. The scheduler moves it to `blocked` and back on this.",
    )
    isolation: Literal["namespaces", "none", "unavailable"] | None = Field(
        default=None,
        description="How the commands this agent runs for tasks (agent loop, shell tasks, "
        "verification commands) are contained here, the weakest of them: `namespaces` "
        "(read-only system, config and state hidden); `none` (some run unisolated: switched "
        "off, or `auto` on a kernel without user namespaces); `unavailable` (isolation is "
        "required but this kernel cannot make it, so those tasks are refused); null when the "
        "agent runs no commands.",
    )


PresenceReport = Annotated[Hello | Heartbeat, Field(discriminator="kind")]


BLOCKED_REJECTION: Final = "agent_blocked"
"""The rejection code of an assignment that reached an agent which cannot take any work now
(its heartbeat saying so was still on its way): the task goes back without using a retry and the
agent is `blocked` until its heartbeats say otherwise."""

PERMANENT_REJECTIONS: Final = frozenset(
    {
        "hub_commands_off",
        "executor_unavailable",
        "command_missing",
        "repo_not_served",
        "isolation_unavailable",
    }
)
"""Rejection codes for what the agent's configuration will not allow however often it is asked
(shell commands off, executor not enabled or not installed, command not on its PATH, repo not
one of its repos, an agent loop that must run isolated on a kernel that cannot isolate it). Such a task is handed back without using a retry and never offered to that
agent again until it says hello anew (a restarted sidecar may have a new config)."""


class TaskOutcome(Contract):
    """A sidecar's word on its assignment, forwarded by the scheduler to the queue."""

    kind: Literal["accepted", "rejected", "completed", "partial_pass", "failed"]
    agent_id: str
    task_id: str
    generation: int = Field(ge=1)
    result: JsonObject = Field(default_factory=dict[str, object])
    error: str | None = Field(default=None, max_length=4000)
    code: Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,64}$")] | None = Field(
        default=None,
        description="Why a `rejected` was rejected; one of PERMANENT_REJECTIONS means the "
        "agent can never take this task.",
    )
    delivery: DeliveryReport | None = Field(
        default=None,
        description="The change's diff stats, pre-publication findings and risk tier, for a "
        "task with a repo that got as far as delivery; stored in the result as `delivery`.",
    )

    @property
    def refused_for_good(self) -> bool:
        return self.kind == "rejected" and self.code in PERMANENT_REJECTIONS


class Assign(Contract):
    """Published to `agentcom.agent.<id>.inbox`: do this task at this generation."""

    kind: Literal["assign"] = "assign"
    task: TaskView
    generation: int
    deadline: datetime | None = Field(
        default=None,
        description="When the whole assignment (every attempt, verification and delivery) must "
        "have ended; the scheduler takes it back a grace after this. None: an older hub.",
    )


class Start(Contract):
    """Published to the inbox once the queue has taken the agent's `accepted`: run it now.

    The fence against a task running on two agents: a sidecar runs nothing it was only
    assigned. Until the queue holds the task as `working` on this agent at this generation
    (the `accepted` applied), the scheduler may still take it back (never accepted in time, a
    reconnect that lost it) and give it to another agent; once it holds it so, nobody else can
    be given it until this attempt has ended. An `accepted` the queue refuses (the task moved
    on) gets a `cancel` instead, so the waiting sidecar drops it.
    """

    kind: Literal["start"] = "start"
    task_id: str
    generation: int = Field(ge=1)


class Cancel(Contract):
    """Published to the inbox: stop working on this assignment (stale, cancelled, overdue)."""

    kind: Literal["cancel"] = "cancel"
    task_id: str
    generation: int
    reason: str


class Cancelled(Contract):
    """A sidecar's word that a cancelled assignment has ended: its processes are gone and
    nothing of it was or will be delivered (sent for every `cancel`, also for a task it had
    not started or had already finished)."""

    kind: Literal["cancelled"]
    agent_id: str
    task_id: str
    generation: int = Field(ge=1)
    note: str = Field(default="", max_length=2000)


class Restart(Contract):
    """Published to the inbox: restart the sidecar process."""

    kind: Literal["restart"] = "restart"
    reason: str = "requested by an admin"


class Restarting(Contract):
    """A sidecar says it is about to restart (expected after a `restart`; not an error)."""

    kind: Literal["restarting"]
    agent_id: str


class Progress(Contract):
    """Output of a running task, batched and bounded by the sidecar; `seq` orders batches."""

    kind: Literal["progress"]
    agent_id: str
    task_id: str
    generation: int = Field(ge=1)
    seq: int = Field(ge=0)
    stage: str = Field(default="executing", max_length=64)
    lines: list[Annotated[str, StringConstraints(max_length=4000)]] = Field(
        default_factory=list[str], max_length=200
    )
    dropped_lines: int = Field(default=0, ge=0, description="Lines coalesced away to stay bounded.")


class ToolCallReport(Contract):
    """One tool call of the agent loop, summarised for the live tool-call stream."""

    kind: Literal["tool_call"]
    agent_id: str
    task_id: str
    generation: int = Field(ge=1)
    seq: int = Field(ge=0)
    tool: str = Field(max_length=64)
    arguments: str = Field(default="", max_length=2000, description="A summary, not the payload.")
    result: str = Field(default="", max_length=2000, description="A summary of the observation.")
    ok: bool
    error_code: str | None = Field(default=None, max_length=64)
    duration_ms: float = Field(ge=0)
    tokens_in: int = Field(default=0, ge=0)
    tokens_out: int = Field(default=0, ge=0)


class Recovering(Contract):
    """After a crash the sidecar found an unfinished task in its journal and is settling it."""

    kind: Literal["recovering"]
    agent_id: str
    task_id: str
    generation: int = Field(ge=1)
    note: str = Field(default="", max_length=2000)


class SchedulerStats(Contract):
    agents_by_state: dict[str, int]


class ListAgents(Request):
    """Body of `agentcom.rpc.scheduler.agents`: every registered agent (the fleet is small)."""


class AgentList(Contract):
    agents: list[AgentView]


class RestartAgent(Request):
    """Body of `agentcom.rpc.scheduler.restart`: the same as `POST /api/agents/{id}/restart`
    (refused with `not_supervised` when nothing would start the sidecar again)."""

    agent_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


AgentReport = Annotated[
    Hello
    | Heartbeat
    | TaskOutcome
    | Cancelled
    | Restarting
    | Progress
    | ToolCallReport
    | Recovering,
    Field(discriminator="kind"),
]
