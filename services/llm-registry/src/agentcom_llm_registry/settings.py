"""llm-registry settings: the common ones plus its own, prefixed `AGENTCOM_LLM_`."""

from datetime import timedelta

from pydantic import Field

from agentcom_common.settings import CommonSettings, Interval

DEFAULT_TIERS: dict[str, list[str]] = {
    "trivial": ["local-small", "local", "claude"],
    "standard": ["local", "claude"],
    "complex": ["claude", "local"],
}
DEFAULT_BUDGETS: dict[str, dict[str, float]] = {
    # calls per sliding window, per caller class (hub-inventory 4.10); "default" covers the rest
    "executing": {"hour": 20, "day": 100},
    "improving": {"hour": 10, "day": 40},
    "contemplating": {"hour": 5, "day": 15},
    "fallback": {"hour": 5, "day": 15},
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
    llm_budgets: dict[str, dict[str, float]] = Field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_BUDGETS.items()},
        description='Caller class -> {"hour": n, "day": n} calls allowed per sliding window '
        "(JSON); a class not listed is not limited.",
    )
    llm_budget_hour: Interval = Field(
        default=timedelta(hours=1), description='Length of the "hour" budget window.'
    )
    llm_budget_day: Interval = Field(
        default=timedelta(days=1), description='Length of the "day" budget window.'
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
