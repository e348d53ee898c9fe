"""An endpoint's circuit breaker as a state table.

    closed ──failure_limit──▶ open ──cooled──▶ half_open ──succeeded──▶ closed
                               ▲                  │
                               └─────failed───────┘

`failure_limit` is a failed call that brings the endpoint's consecutive failures to
`AGENTCOM_LLM_CIRCUIT_FAILURES`; `failed` is one below it; `cooled` is a pick after
`AGENTCOM_LLM_CIRCUIT_OPEN` in `open` (the one trial call goes out in `half_open`, others wait);
`succeeded` is any call that came back well. A call sent before the circuit opened can still
come back in `open`: success closes it (the endpoint answers again), failure keeps it open.
Every (state, signal) pair has a move, so a signal can never find the breaker without one;
`Registry` applies the moves and keeps the counters and clocks beside them.
"""

from collections.abc import Mapping
from typing import Final, Literal

Circuit = Literal["closed", "open", "half_open"]
Signal = Literal["succeeded", "failed", "failure_limit", "cooled"]

MOVES: Final[Mapping[tuple[Circuit, Signal], Circuit]] = {
    ("closed", "succeeded"): "closed",
    ("closed", "failed"): "closed",
    ("closed", "failure_limit"): "open",
    ("closed", "cooled"): "closed",
    ("open", "succeeded"): "closed",
    ("open", "failed"): "open",
    ("open", "failure_limit"): "open",
    ("open", "cooled"): "half_open",
    ("half_open", "succeeded"): "closed",
    ("half_open", "failed"): "open",
    ("half_open", "failure_limit"): "open",
    ("half_open", "cooled"): "half_open",
}


def move(circuit: Circuit, signal: Signal) -> Circuit:
    """The state `circuit` goes to on `signal`."""
    return MOVES[(circuit, signal)]
