"""LLM registry contracts: endpoint events, routing decisions and the chat RPC."""

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, StringConstraints

from agentcom_common.contracts.base import Contract, Request
from agentcom_common.contracts.task import Tier  # one model tier, for tasks and calls alike

GOAL_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"  # a goal named to the gateway (HTTP header, NATS)
GoalId = Annotated[str, StringConstraints(pattern=GOAL_ID_PATTERN)]


class EndpointChanged(Contract):
    """Body of `agentcom.evt.llm.endpoint_added|endpoint_removed|endpoint_shared|
    endpoint_health_changed`."""

    endpoint_id: str
    provider: str
    health: str
    reason: str
    at: datetime


class RouteStep(Contract):
    """One candidate the router looked at, in order, and what happened to it."""

    endpoint_id: str
    model: str
    model_class: str
    score: float
    outcome: str  # chosen | failed: ... | skipped: ... | not tried


class Routing(Contract):
    """Why a call went where it went; the `routing` field and `agentcom.evt.llm.routed`."""

    tier: str
    requested_model: str | None = None
    endpoint_id: str | None = None
    model: str | None = None
    attempts: int = 0
    fallback_used: bool = False
    reason: str = ""
    candidates: list[RouteStep] = Field(default_factory=list[RouteStep])


class CallRouted(Contract):
    """Body of `agentcom.evt.llm.routed`: one gateway call, its decision and its cost."""

    call_id: str
    caller: str
    caller_class: str = Field(description="`agent`, or `hub:<state>` for the hub's calls.")
    goal_id: str | None = None
    ok: bool
    tokens_in: int
    tokens_out: int
    duration_ms: float
    cost_usd: float
    routing: Routing
    at: datetime


class ChatRequest(Request):
    """Body of `agentcom.rpc.llm.chat`: OpenAI-shaped messages and tools, no streaming."""

    messages: list[dict[str, Any]] = Field(min_length=1, max_length=10000)
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=500)
    model: str | None = Field(default=None, max_length=200)
    tier: Tier | None = None
    caller: str = Field(
        default="hub",
        max_length=200,
        description="A label for the ledger. Who pays is not the caller's to say: a call over "
        "NATS is the hub's (only services reach this subject), charged to the hub's current "
        "state's budget.",
    )
    goal_id: GoalId | None = Field(
        default=None, description="The goal the call is about: its budget is charged too."
    )
    options: dict[str, Any] = Field(default_factory=dict[str, Any])


class ChatToolCall(Contract):
    id: str
    name: str
    arguments: dict[str, Any]


class ChatReply(Contract):
    """Reply of `agentcom.rpc.llm.chat`."""

    content: str
    tool_calls: list[ChatToolCall] = Field(default_factory=list[ChatToolCall])
    finish_reason: str
    model: str
    endpoint_id: str
    tokens_in: int
    tokens_out: int
    duration_ms: float
    cost_usd: float = Field(default=0.0, description="The ledger's price of the call (USD).")
    routing: Routing


class ListEndpoints(Request):
    """Body of `agentcom.rpc.llm.endpoints`: the endpoints with their health and tiers."""


class EndpointHealth(Contract):
    """One endpoint as the hub's health assessment reads it."""

    id: str
    health: str = Field(description="unknown, healthy or unhealthy (after failed checks).")
    circuit: str
    tiers: list[str] = Field(description="The tiers whose model classes it serves.")
    last_error: str | None
    shared: bool = Field(description="False: an agent's own endpoint, never probed.")


class EndpointList(Contract):
    endpoints: list[EndpointHealth]
    tiers: list[str] = Field(description="Every tier, cheapest first (the escalation order).")
    fallbacks: dict[str, datetime] = Field(
        description="Tiers routed to the next tier's classes, and until when."
    )


class CheckEndpoint(Request):
    """Body of `agentcom.rpc.llm.check`: probe one endpoint now (as `POST .../check`)."""

    endpoint_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class RouteFallback(Request):
    """Body of `agentcom.rpc.llm.fallback`: route `tier`'s calls from the next tier's model
    classes for `seconds` (0 ends it), skipping its own; refused with `no_fallback` for the
    top tier."""

    tier: Tier
    seconds: float = Field(ge=0, le=86_400)
    reason: Annotated[str, StringConstraints(max_length=500)] = ""


class TierFallback(Contract):
    tier: str
    until: datetime | None = Field(description="None: the tier routes normally again.")
    classes: list[str] = Field(description="The model classes its calls go to meanwhile.")
