"""The hub's rules: a pure function of the state and the signals, first match wins.

From the first implementation (hub-inventory 4.5), with one change: a goal counts as waiting
from submission until it is verified (`Signals.goals_open`), not only while `submitted`. The
first hub planned goals only while executing; here the goal driver runs in every state and may
take a goal to `planning` before the brain's next pass, and the hub must still go executing.

    1. healing: stay (healing's own work ends it; the watchdog bounds it)
    2. any other state, critical issues, healing not cooling down or exhausted -> healing
    3. resting: budget spent -> stay; goals open -> executing;
       no goals and improving's budget, or a contemplation cycle due -> improving
    4. executing: budget spent -> resting; no goals open -> resting
    5. improving, contemplating: goals open -> executing; budget spent -> resting
    6. improving: nothing left to improve and a contemplation cycle due -> contemplating
       (contemplating's own work, the cycle, moves the hub to resting when it ends)
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from agentcom_common.contracts.hub import HubState
from agentcom_hubfsm.brain.signals import Signals

H = HubState
EVERY: Final = frozenset(HubState)


@dataclass(frozen=True, slots=True)
class Rule:
    """When the hub is in one of `states` and `holds(signals)`: go to `to` (None: stay, and
    no later rule is asked). `name` is the reason recorded with the move."""

    name: str
    states: frozenset[HubState]
    holds: Callable[[Signals], bool]
    to: HubState | None


def _needs_healing(s: Signals) -> bool:
    return s.critical_issues > 0 and not s.healing_cooldown and not s.healing_exhausted


RULES: Final = (
    Rule("healing", frozenset({H.HEALING}), lambda _s: True, None),
    Rule("critical_issues", EVERY - {H.HEALING}, _needs_healing, H.HEALING),
    Rule("budget_exhausted", frozenset({H.RESTING}), lambda s: s.budget_exhausted, None),
    Rule("goals_open", frozenset({H.RESTING}), lambda s: s.goals_open > 0, H.EXECUTING),
    Rule(
        "nothing_to_do",
        frozenset({H.RESTING}),
        lambda s: s.goals_open == 0 and (s.improving_budget or s.contemplation_due),
        H.IMPROVING,
    ),
    Rule("budget_exhausted", frozenset({H.EXECUTING}), lambda s: s.budget_exhausted, H.RESTING),
    Rule("goals_done", frozenset({H.EXECUTING}), lambda s: s.goals_open == 0, H.RESTING),
    Rule(
        "goals_open",
        frozenset({H.IMPROVING, H.CONTEMPLATING}),
        lambda s: s.goals_open > 0,
        H.EXECUTING,
    ),
    Rule(
        "budget_exhausted",
        frozenset({H.IMPROVING, H.CONTEMPLATING}),
        lambda s: s.budget_exhausted,
        H.RESTING,
    ),
    Rule(
        "improving_done",
        frozenset({H.IMPROVING}),
        lambda s: s.improving_left == 0 and s.contemplation_due,
        H.CONTEMPLATING,
    ),
)


def decide(state: HubState, signals: Signals) -> Rule | None:
    """The first rule that applies, or None (no rule: stay)."""
    return next((r for r in RULES if state in r.states and r.holds(signals)), None)


def next_state(state: HubState, signals: Signals) -> HubState | None:
    """Where the hub should go, or None to stay."""
    rule = decide(state, signals)
    return None if rule is None else rule.to
