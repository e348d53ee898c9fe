"""Hub contracts: the hub's state (which other services follow: the LLM budgets per state) and
goals, the unit of work a person gives the hub (intake, views, events).

A goal's wire strings are its database strings too (`GoalState`), like the task states.
"""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import Field, StringConstraints

from agentcom_common.contracts.base import Contract, Request
from agentcom_common.contracts.github import PrRound
from agentcom_common.contracts.task import Lane, TaskState


class HubState(StrEnum):
    """The hub's state (`agentcom_hubfsm.brain.states` holds the transitions). The values are
    also the llm-registry's budget keys: the hub's calls pay into the budget of its state."""

    RESTING = "resting"
    EXECUTING = "executing"
    IMPROVING = "improving"
    CONTEMPLATING = "contemplating"
    HEALING = "healing"


HUB_STATES: Final = tuple(HubState)

GoalId = Annotated[str, StringConstraints(pattern=r"^goal-[0-9a-f]{16}$")]
Criterion = Annotated[str, StringConstraints(min_length=1, max_length=1000)]


class HubStateChanged(Contract):
    """Body of `agentcom.evt.hub.state_changed`: the hub entered `state`.

    Only services may publish on `agentcom.evt.>` (an agent's NATS user is confined to its own
    subjects), so a follower may take the newest one as the hub's state."""

    state: HubState
    at: datetime
    from_state: HubState | None = None
    reason: str = ""
    actor: str = ""
    cycle: int = Field(default=0, description="Cycles so far (resting -> executing/improving).")


class HubPauseChanged(Contract):
    """Body of `agentcom.evt.hub.paused` and `agentcom.evt.hub.resumed`."""

    paused: bool
    state: HubState
    reason: str
    actor: str
    at: datetime


class HubWatchdogFired(Contract):
    """Body of `agentcom.evt.hub.watchdog_fired`: the hub stayed in `from_state` past its
    deadline and was forced to `state` (resting). Always critical: something the hub waited
    for never came, and a person should look."""

    watchdog: Literal["global", "healing"] = Field(
        description="`healing`: a healing run hung past `hub_healing_watchdog`."
    )
    severity: Literal["critical"] = "critical"
    from_state: HubState
    state: HubState
    entered_at: datetime
    deadline: datetime
    at: datetime
    message: str


class HubView(Contract):
    """The hub brain as `GET /api/hub/state` shows it."""

    state: HubState
    since: datetime = Field(description="When the hub entered `state`.")
    reason: str = Field(description="Why it is in `state` (the last move's reason).")
    paused: bool = Field(description="A paused hub does not move (except its watchdog).")
    cycle: int = Field(description="Cycles so far: moves resting -> executing or improving.")
    seconds_in_state: dict[HubState, float] = Field(
        description="Seconds spent in each state since the hub was first started, the current "
        "stay included."
    )
    watchdog_at: datetime | None = Field(
        description="When the global watchdog forces `resting` if the hub has not moved by "
        "then; none while resting."
    )
    work: str | None = Field(
        description="The entry work of `state` running now (`healing-run`, `contemplation`); "
        "none otherwise (executing's work is the goal driver, which runs on its own)."
    )
    leader: str | None = Field(description="The instance (host:pid) whose brain is active.")
    goals_pending: int = Field(description="Goals submitted, not yet planned.")
    goals_active: int = Field(
        description="Goals planning, awaiting approval, executing or verifying."
    )


class HubMove(Contract):
    """One row of the hub's history."""

    id: int
    from_state: HubState | None
    to_state: HubState
    reason: str
    actor: str
    at: datetime


class HubHistoryPage(Contract):
    moves: list[HubMove]
    next_cursor: str | None


class HubStateRequest(Request):
    """Body of `agentcom.rpc.hub.state` (empty)."""


class GoalState(StrEnum):
    """A goal's lifecycle (`agentcom_hubfsm.goals.states` holds the transitions)."""

    SUBMITTED = "submitted"
    PLANNING = "planning"
    AWAITING_APPROVAL = "awaiting_approval"
    EXECUTING = "executing"
    VERIFYING = "verifying"
    COMPLETE = "complete"
    FAILED = "failed"
    NEEDS_REVIEW = "needs_review"  # a person must decide: retry it, or cancel it
    CANCELLED = "cancelled"


class Autonomy(StrEnum):
    """How far the hub goes on its own: `auto` plans and runs; `review_plan` stops at
    `awaiting_approval` until a person approves or rejects the plan."""

    AUTO = "auto"
    REVIEW_PLAN = "review_plan"


GoalSource = Literal["http", "cli", "nats", "github", "proposal", "self_improvement"]


class SubmitGoal(Request):
    """A goal as a person writes it. With `client_key`, a repeat returns the first goal."""

    title: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    description: Annotated[str, StringConstraints(max_length=20_000)] = ""
    success_criteria: list[Criterion] = Field(min_length=1, max_length=20)
    repo: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    priority: Lane = Lane.NORMAL
    budget_tokens: int | None = Field(default=None, ge=1, le=1_000_000_000)
    budget_usd: float | None = Field(default=None, gt=0, le=1_000_000)
    autonomy: Autonomy = Autonomy.AUTO
    client_key: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    source: GoalSource = "http"
    link: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = Field(
        default=None, description="Where the goal came from (a GitHub issue's page)."
    )


class GoalTask(Contract):
    """One task the hub submitted for a goal, with the state its last event reported."""

    task_id: str
    key: str  # `<goal>:<attempt>:<n>`, the client_key it was submitted with
    title: str
    state: TaskState
    kind: Literal["plan", "follow_up", "verification", "pr_feedback"] = "plan"


class GoalTransition(Contract):
    """One row of a goal's history; also the body of every `agentcom.evt.goal.*` event."""

    goal_id: str
    from_state: GoalState | None
    to_state: GoalState
    reason: str
    actor: str
    at: datetime


class Verification(Contract):
    """One check of a goal's result against its success criteria."""

    round: int
    passed: bool
    report: dict[str, Any]
    at: datetime


class GoalView(Contract):
    id: str
    state: GoalState
    title: str
    description: str
    success_criteria: list[str]
    repo: str
    priority: Lane
    budget_tokens: int | None
    budget_usd: float | None
    autonomy: Autonomy
    source: GoalSource
    link: str | None = None
    created_by: str
    attempt: int = Field(description="Plans made so far; a retry or a rejected plan adds one.")
    reason: str = Field(description="Why the goal is in its state (the last move's reason).")
    plan: dict[str, Any] | None
    plan_errors: list[str]
    cost_tokens: int
    cost_usd: float
    tasks_done: int
    tasks_total: int
    created_at: datetime
    updated_at: datetime


class GoalDetail(GoalView):
    """A goal with everything that happened to it."""

    tasks: list[GoalTask]
    verifications: list[Verification]
    history: list[GoalTransition]
    pr_rounds: list[PrRound] = Field(
        default_factory=list[PrRound],
        description="Feedback rounds of the goal's pull requests (checks, reviews, conflicts).",
    )


class GoalRef(Request):
    """Body of the hub's per-goal RPCs (`goal`, `cancel_goal`, `retry_goal`)."""

    goal_id: GoalId
    reason: Annotated[str, StringConstraints(max_length=500)] = ""


class ListGoals(Request):
    state: GoalState | None = None
    repo: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = None
    cursor: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,18}$")] | None = None
    limit: int = Field(default=50, ge=1, le=500)


class GoalPage(Contract):
    goals: list[GoalView]
    next_cursor: str | None


class RejectPlan(Request):
    """Body of `POST /api/goals/{id}/plan/reject`: the reason is told to the next plan."""

    reason: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
