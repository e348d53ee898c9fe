"""Scoring and ordering in the in-memory registry, with the live signals set exactly.

The latency an endpoint is scored on is measured wall-clock time, which a loaded test machine
makes arbitrary; here `finished()` is given the seconds, so each pick is decided by the rules.
"""

from typing import get_args

from agentcom_llm_registry import breaker
from agentcom_llm_registry.breaker import Circuit, Signal
from agentcom_llm_registry.registry import Endpoint, Registry


def _registry(*names: str) -> Registry:
    registry = Registry(
        {"standard": ["local"]}, circuit_failures=3, circuit_open=1.0, resource_stale=60.0
    )
    for name in names:
        registry.put(
            Endpoint(name, "ollama", f"http://{name}", None, ["local"], ["qwen3:8b"], None, "test")
        )
    return registry


def _call_one_after_another(registry: Registry, seconds: dict[str, float], calls: int) -> list[str]:
    picked: list[str] = []
    for _ in range(calls):
        best = registry.candidates("standard", None)[0][0].endpoint
        registry.started(best)
        registry.finished(best, True, seconds[best.id], 1, 1)
        picked.append(best.id)
    return picked


def test_equal_endpoints_take_turns_one_call_after_another() -> None:
    registry = _registry("one", "two")

    picked = _call_one_after_another(registry, {"one": 0.05, "two": 0.05}, 10)

    assert picked == ["one", "two"] * 5


def test_latency_within_the_tie_band_still_takes_turns() -> None:
    registry = _registry("one", "two")  # 1.05 / 1.08: 3 % apart, inside the 10 % band

    picked = _call_one_after_another(registry, {"one": 0.05, "two": 0.08}, 10)

    assert picked == ["one", "two"] * 5


def test_a_clearly_slower_endpoint_is_picked_only_while_unmeasured() -> None:
    registry = _registry("one", "two")  # 1.05 / 1.5: outside the band

    picked = _call_one_after_another(registry, {"one": 0.05, "two": 0.5}, 10)

    assert picked == ["one", "two"] + ["one"] * 8


def test_in_flight_calls_split_equal_endpoints_evenly() -> None:
    registry = _registry("one", "two")
    picked: list[str] = []
    for _ in range(20):  # none finishes: in-flight counts and recency decide
        best = registry.candidates("standard", None)[0][0].endpoint
        registry.started(best)
        picked.append(best.id)

    assert picked == ["one", "two"] * 10


def test_the_breaker_has_a_move_for_every_state_and_signal() -> None:
    states, signals = get_args(Circuit), get_args(Signal)
    assert set(breaker.MOVES) == {(c, s) for c in states for s in signals}


def test_a_failed_trial_opens_the_circuit_again_for_a_full_cool_down() -> None:
    registry = _registry("one")
    one = registry.endpoints["one"]
    for _ in range(3):  # circuit_failures = 3
        registry.started(one)
        registry.finished(one, False, 0.1, 0, 0)
    assert one.circuit == "open"
    assert registry.admits(one, one.opened_at + 0.5) == (False, "circuit open")

    assert registry.admits(one, one.opened_at + 1.5) == (True, "")  # cooled: one trial
    assert one.circuit == "half_open"
    registry.started(one)
    assert registry.admits(one, one.opened_at + 1.5) == (
        False,
        "circuit half-open, trial call running",
    )
    first_opened = one.opened_at
    registry.finished(one, False, 0.1, 0, 0)

    assert one.circuit == "open"
    assert one.opened_at > first_opened
    assert registry.admits(one, one.opened_at + 0.5) == (False, "circuit open")
