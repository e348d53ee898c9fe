"""The llm-registry's instruments: model calls by endpoint, model and tier (the OTel `gen_ai`
semantic conventions: operation duration and token usage), their cost, candidates that failed
so a call moved on, and the sampled state of breakers, tier fallbacks and budgets.

Calls are recorded where the ledger records them (`Ledger.record`, every call, answered or
not), so the metrics and the cost ledger count the same calls. Made at import like a logger.
"""

from typing import Final

from agentcom_common import metering
from agentcom_llm_registry.budgets import Budgets
from agentcom_llm_registry.registry import Registry

CIRCUITS: Final = ("closed", "open", "half_open")
_m = metering.meter("agentcom.llm-registry")

duration = _m.create_histogram(
    "gen_ai.client.operation.duration",
    unit="s",
    description="Model calls through the gateway, from the request to the last token, by "
    "endpoint, model and tier (error.type set when no candidate answered).",
    explicit_bucket_boundaries_advisory=metering.SECONDS_BUCKETS,
)
tokens = _m.create_histogram(
    "gen_ai.client.token.usage",
    unit="{token}",
    description="Tokens per model call by gen_ai.token.type (input, output), endpoint, model, "
    "tier.",
    explicit_bucket_boundaries_advisory=(
        1,
        4,
        16,
        64,
        256,
        1024,
        4096,
        16384,
        65536,
        262144,
        1048576,
    ),
)
cost = _m.create_counter(
    "agentcom.llm.cost",
    unit="USD",
    description="Priced cost of model calls (the ledger's prices), by endpoint, model, tier.",
)
failovers = _m.create_counter(
    "agentcom.llm.failovers",
    unit="{call}",
    description="Candidates that failed a call, so it moved on to the next (by the endpoint "
    "that failed and the tier).",
)
circuit = metering.Sampled(
    _m,
    "agentcom.llm.circuit",
    "",
    "1 for each endpoint's breaker state now (closed, open, half_open), by endpoint.",
)
fallback = metering.Sampled(
    _m,
    "agentcom.llm.tier.fallback",
    "",
    "1 while a tier is routed from the next tier up (`agentcom llm fallback`), by tier.",
)
budget_used = metering.Sampled(
    _m,
    "agentcom.llm.budget.used",
    "1",
    "Share of each budget's limit used in its window (tokens or usd), by scope and unit.",
)


def record_call(
    endpoint: str | None,
    model: str | None,
    tier: str | None,
    tokens_in: int,
    tokens_out: int,
    seconds: float,
    usd: float,
    *,
    ok: bool,
) -> None:
    attrs: dict[str, str] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model or "none",
        "agentcom.llm.endpoint": endpoint or "none",
        "agentcom.llm.tier": tier or "none",
    }
    if not ok:
        attrs["error.type"] = "no_candidate_answered"
    duration.record(seconds, attrs)
    if ok:
        tokens.record(tokens_in, attrs | {"gen_ai.token.type": "input"})
        tokens.record(tokens_out, attrs | {"gen_ai.token.type": "output"})
        cost.add(usd, attrs)


def sampler(registry: Registry, budgets: Budgets) -> metering.Sampler:
    async def sample() -> None:
        circuit.set(
            {
                (("agentcom.llm.endpoint", e.id), ("state", state)): float(e.circuit == state)
                for e in registry.endpoints.values()
                for state in CIRCUITS
            }
        )
        fallback.set(
            {(("agentcom.llm.tier", t),): float(registry.falls_back(t)) for t in registry.tiers}
        )
        points: dict[tuple[tuple[str, str], ...], float] = {}
        for b in await budgets.status():
            if b.max_tokens:
                points[("scope", b.scope), ("unit", "tokens")] = b.tokens / b.max_tokens
            if b.max_usd:
                points[("scope", b.scope), ("unit", "usd")] = b.usd / b.max_usd
        budget_used.set(points)

    return sample
