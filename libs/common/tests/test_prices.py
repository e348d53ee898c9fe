"""The one price table: Claude ids in every spelling are priced; local models are free."""

import pytest

from agentcom_common import prices


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("claude-sonnet-4-5", (3.0, 15.0)),
        ("claude-sonnet-4-5-20250929", (3.0, 15.0)),  # a dated id matches its family
        ("claude-sonnet-4.5", (3.0, 15.0)),  # dots spelt as dashes
        ("anthropic/Claude-Opus-4.5", (5.0, 25.0)),  # router prefix and case dropped
        ("claude-opus-4-1-20250805", (15.0, 75.0)),
        ("claude-haiku-4-5", (1.0, 5.0)),
        ("claude-next-big-one", (15.0, 75.0)),  # unlisted Claude: the dearest, never free
        ("qwen3:8b", (0.0, 0.0)),
        (None, (0.0, 0.0)),
    ],
)
def test_models_match_their_price(model: str | None, expected: tuple[float, float]) -> None:
    assert prices.rates(model) == expected


def test_a_setting_adds_and_replaces_entries_of_the_built_in_table() -> None:
    table = prices.merged({"gpt-4o": (2.5, 10.0), "Claude-Sonnet-4.5": (1.0, 2.0)})

    assert prices.rates("gpt-4o-2024-08-06", table) == (2.5, 10.0)
    assert prices.rates("claude-sonnet-4-5-20250929", table) == (1.0, 2.0)
    assert prices.rates("claude-haiku-4-5", table) == (1.0, 5.0)
    assert prices.cost("claude-sonnet-4-5", 1_000_000, 1_000_000) == pytest.approx(18.0)
