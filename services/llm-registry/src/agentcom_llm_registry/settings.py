"""llm-registry settings: the common ones plus its own, prefixed `AGENTCOM_LLM_`."""

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, field_validator

from agentcom_common.contracts.hub import HubState
from agentcom_common.settings import CommonSettings, Interval

DEFAULT_TIERS: dict[str, list[str]] = {
    "trivial": ["local-small", "local", "claude"],
    "standard": ["local", "claude"],
    "complex": ["claude", "local"],
}


class Limit(BaseModel):
    """One budget: tokens (in + out) and USD per window; None leaves that measure unlimited."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    tokens: StrictInt | None = Field(default=None, ge=0)
    usd: StrictFloat | StrictInt | None = Field(default=None, ge=0)


DEFAULT_HUB_BUDGETS: dict[HubState, Limit] = {
    # per window (a day by default); the first implementation allowed calls in this proportion
    # per state (hub-inventory 4.10: executing 100, improving 40, contemplating 15 a day)
    HubState.EXECUTING: Limit(tokens=5_000_000, usd=50.0),
    HubState.IMPROVING: Limit(tokens=2_000_000, usd=20.0),
    HubState.CONTEMPLATING: Limit(tokens=1_000_000, usd=10.0),
    HubState.HEALING: Limit(tokens=1_000_000, usd=10.0),
    HubState.RESTING: Limit(tokens=1_000_000, usd=10.0),
}


class LlmSettings(CommonSettings):
    llm_health_interval: Interval = Field(
        default=timedelta(seconds=30), description="How often each endpoint is health-checked."
    )
    llm_health_timeout: Interval = Field(
        default=timedelta(seconds=5), description="Deadline of one health check."
    )
    llm_unhealthy_after: int = Field(
        default=2, ge=1, le=100, description="Consecutive failed checks before unhealthy."
    )
    llm_recover_backoff_max: Interval = Field(
        default=timedelta(minutes=5),
        description="Longest pause between checks of an unhealthy endpoint; the pause doubles "
        "from the health interval up to this.",
    )
    llm_request_timeout: Interval = Field(
        default=timedelta(seconds=120),
        description="Longest wait for the next bytes of an upstream chat reply (a long stream may run longer in total).",
    )
    llm_connect_timeout: Interval = Field(
        default=timedelta(seconds=5), description="Deadline to connect to an upstream."
    )
    llm_circuit_failures: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Consecutive failed calls that open an endpoint's circuit breaker.",
    )
    llm_circuit_open: Interval = Field(
        default=timedelta(seconds=30),
        description="How long an open circuit refuses calls before one trial call (half-open).",
    )
    llm_tiers: dict[str, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_TIERS.items()},
        description="Complexity tier -> ordered model classes (JSON). A class matches "
        "endpoints tagged with it, or a model name.",
    )
    llm_budget_window: Interval = Field(
        default=timedelta(days=1),
        description="Length of a budget's window: it opens with the first call after the last "
        "one closed, and its use starts at 0 again when it closes.",
    )
    llm_agent_budget: Limit = Field(
        default=Limit(tokens=10_000_000, usd=50.0),
        description='Each agent\'s budget per window (JSON {"tokens": n, "usd": x}); every call '
        "made with an agent's token is charged to its agent.",
    )
    llm_agent_budgets: dict[str, Limit] = Field(
        default_factory=dict[str, Limit],
        description="Agent id -> its own budget, replacing the default for that agent (JSON).",
    )
    llm_goal_budget: Limit = Field(
        default=Limit(tokens=5_000_000, usd=25.0),
        description="Each goal's budget per window (JSON); charged by the hub's calls that name "
        "the goal (`X-Agentcom-Goal`, `goal_id`).",
    )
    llm_hub_budgets: dict[HubState, Limit] = Field(
        default_factory=lambda: dict(DEFAULT_HUB_BUDGETS),
        description="Hub state -> budget per window of the hub's calls (admin tokens, NATS) made "
        "while the hub is in that state (JSON); states not named keep their default.",
    )
    llm_reserve_max_tokens: int = Field(
        default=4096,
        ge=1,
        le=1_000_000,
        description="Output tokens reserved, and sent upstream as max_tokens, for a call that "
        "names no max_tokens (num_predict).",
    )
    llm_prices: dict[str, tuple[float, float]] = Field(
        default_factory=dict[str, tuple[float, float]],
        description="Model (or name prefix) -> [USD per 1M input tokens, USD per 1M output "
        "tokens] (JSON), added to or replacing entries of the built-in table "
        "(agentcom_common.prices: Claude list prices); unmatched models cost 0 (local ones: "
        "tokens and time are still counted).",
    )
    llm_ledger_flush_interval: Interval = Field(
        default=timedelta(milliseconds=500),
        description="How often buffered ledger rows are written to Postgres.",
    )
    llm_ledger_dir: str | None = Field(
        default=None,
        description="Directory of the ledger journal (crash safety); default <home>/llm-ledger.",
    )
    llm_resource_stale: Interval = Field(
        default=timedelta(seconds=90),
        description="Host resources older than this are ignored by scoring.",
    )
    llm_latency_window: int = Field(
        default=50, ge=1, le=10000, description="Recent calls per endpoint kept for latency."
    )

    @field_validator("llm_hub_budgets")
    @classmethod
    def _every_state(cls, value: dict[HubState, Limit]) -> dict[HubState, Limit]:
        return DEFAULT_HUB_BUDGETS | value  # a state left out keeps its default, never unlimited
