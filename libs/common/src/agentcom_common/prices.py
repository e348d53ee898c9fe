"""The one LLM price table: USD per million tokens (input, output) by model name.

The gateway's ledger prices every call with it (and its budgets reserve money by it); the
sidecar uses the cost the gateway reports, and this table only when a gateway reports none.
Before, the ledger's table was empty (Claude cost $0) while the sidecar kept its own.

A model matches its exact name, else the longest key it starts with, after lowercasing, dropping a
router prefix (`anthropic/claude-sonnet-4.5`) and spelling versions with dashes (`4.5` = `4-5`),
so dated ids (`claude-sonnet-4-5-20250929`) match their family. An unlisted Claude model matches
`claude` and costs the dearest Claude price: a budget in money must not count it as free.
Models not matched at all (local ones) cost 0; their tokens and time are still counted.
"""

from collections.abc import Mapping
from typing import Final

Rates = tuple[float, float]  # USD per million input tokens, per million output tokens

PRICES: Final[Mapping[str, Rates]] = {
    # Anthropic list prices (anthropic.com/pricing)
    "claude-opus-4-6": (5.0, 25.0),
    "claude-opus-4-5": (5.0, 25.0),
    "claude-opus-4-1": (15.0, 75.0),
    "claude-opus-4": (15.0, 75.0),
    "claude-sonnet-4-5": (3.0, 15.0),
    "claude-sonnet-4": (3.0, 15.0),
    "claude-haiku-4-5": (1.0, 5.0),
    "claude-3-7-sonnet": (3.0, 15.0),
    "claude-3-5-sonnet": (3.0, 15.0),
    "claude-3-5-haiku": (0.8, 4.0),
    "claude-3-opus": (15.0, 75.0),
    "claude-3-haiku": (0.25, 1.25),
    "claude": (15.0, 75.0),
}


def _key(model: str) -> str:
    return model.rsplit("/", 1)[-1].lower().replace(".", "-")


def rates(model: str | None, table: Mapping[str, Rates] = PRICES) -> Rates:
    """The (input, output) rates of `model` in `table` (keys spelt as `merged` makes them); (0, 0)
    for a model it does not price."""
    name = _key(model or "")
    if name in table:
        return table[name]
    prefixes = [k for k in table if name.startswith(k)]
    return table[max(prefixes, key=len)] if prefixes else (0.0, 0.0)


def cost(
    model: str | None, tokens_in: int, tokens_out: int, table: Mapping[str, Rates] = PRICES
) -> float:
    """USD of a call of `model` with these token counts."""
    rate_in, rate_out = rates(model, table)
    return (tokens_in * rate_in + tokens_out * rate_out) / 1_000_000


def merged(overrides: Mapping[str, Rates]) -> dict[str, Rates]:
    """The built-in table with a setting's entries added or replacing (keys matched as above)."""
    out = {_key(k): v for k, v in PRICES.items()}
    out |= {_key(k): (float(v[0]), float(v[1])) for k, v in overrides.items()}
    return out
