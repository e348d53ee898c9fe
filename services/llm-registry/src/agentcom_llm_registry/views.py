"""HTTP shapes of the registry API (the NATS contracts live in agentcom_common.contracts.llm)."""

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, SecretStr, StringConstraints, field_validator

from agentcom_common.contracts.base import Contract, Request
from agentcom_llm_registry.providers import Provider

EndpointId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class AddEndpoint(Request):
    id: EndpointId = Field(description="Letters, digits, _ and -; names the endpoint everywhere.")
    provider: Provider
    base_url: str = Field(
        min_length=1,
        max_length=500,
        description="Ollama: http://host:11434; OpenAI-compatible: the SDK base URL "
        "(http://host:8000/v1); Anthropic: https://api.anthropic.com.",
    )
    api_key: SecretStr | None = Field(
        default=None, description="Stored server-side; never logged, never returned."
    )
    classes: list[Name] = Field(
        default_factory=list[str], max_length=20, description="Model classes it serves."
    )
    models: list[Name] = Field(
        default_factory=list[str], max_length=200, description="Models it serves (discovery adds)."
    )
    host: Name | None = Field(default=None, description="Host name, to join sidecar resources.")

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class Resources(Contract):
    host: str
    agent_id: str
    cpu_percent: float | None
    ram_percent: float | None
    vram_percent: float | None
    load: float | None
    gpus: list[dict[str, Any]]
    age_s: float


class Metrics(Contract):
    calls: int
    errors: int
    in_flight: int
    tokens_in: int
    tokens_out: int
    latency_p50_ms: float | None
    error_rate: float


class EndpointView(Contract):
    id: str
    provider: str
    base_url: str
    has_api_key: bool
    classes: list[str]
    models: list[str]
    warm_models: list[str]
    host: str | None
    source: str
    owner: str | None = Field(
        description="The agent whose heartbeat it was learnt from; it serves that agent alone "
        "until `shared`."
    )
    shared: bool = Field(description="Whether every caller may use it.")
    health: str
    consecutive_failures: int
    last_error: str | None
    circuit: str
    resources: Resources | None
    metrics: Metrics


class CostRow(Contract):
    key: str | None
    calls: int
    failed: int
    tokens_in: int
    tokens_out: int
    duration_ms: float
    cost_usd: float


class BudgetView(Contract):
    """One budget's window: what it used (reserved calls included) and its limits."""

    scope: str = Field(description="`agent:<id>`, `goal:<id>` or `hub:<state>`.")
    window_start: datetime
    resets_at: datetime = Field(description="When the window closes and use starts at 0.")
    tokens: int
    usd: float
    max_tokens: int | None = Field(description="None: tokens are not limited.")
    max_usd: float | None = Field(description="None: money is not limited.")


class Costs(Contract):
    since: str
    group_by: str
    rows: list[CostRow]
    budgets: list[BudgetView] = Field(description="Every budget that has been charged.")


class Amount(Contract):
    tokens: int | None
    usd: float | None


class BudgetRefusal(Contract):
    scope: str
    limit: Amount
    used: Amount
    requested: Amount = Field(description="The call's estimate: prompt + max_tokens.")
    resets_at: str | None


class BudgetProblem(Contract):
    """A 429 `budget_exhausted`: the budget, its limit, its use and the call's estimate."""

    error: str
    detail: str
    budget: BudgetRefusal
    retry_after: float | None = Field(
        default=None,
        description="Seconds until the window closes (also `Retry-After`); absent when the "
        "call alone asks for more than the whole limit.",
    )
