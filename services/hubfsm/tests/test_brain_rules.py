"""The hub's machine and rules, exhaustively: every state against every combination of the
signals the rules read, checked against the rules as the inventory states them (written here
a second time, as nested conditions), and first-match order case by case."""

import itertools

import pytest

from agentcom_common.contracts.hub import HubState
from agentcom_hubfsm.brain import rules, states
from agentcom_hubfsm.brain.signals import Signals

H = HubState


def every_signals() -> list[Signals]:
    counts = (0, 2), (0, 3), (0, 1), (0, 4)  # pending, active, critical, improving left
    flags = [(False, True)] * 5  # budget spent, improving budget, cooling, exhausted, due
    found: list[Signals] = []
    for (pending, active, critical, left), (
        spent,
        improve,
        cooling,
        exhausted,
        due,
    ) in itertools.product(itertools.product(*counts), itertools.product(*flags)):
        found.append(
            Signals(
                goals_pending=pending,
                goals_active=active,
                budget_exhausted=spent,
                improving_budget=improve,
                critical_issues=critical,
                healing_cooldown=cooling,
                healing_exhausted=exhausted,
                improving_left=left,
                contemplation_due=due,
            )
        )
    return found


def expected(state: HubState, s: Signals) -> HubState | None:
    """hub-inventory 4.5, goals open = pending + active (see `rules`' docstring)."""
    if state is H.HEALING:
        return None
    if s.critical_issues > 0 and not s.healing_cooldown and not s.healing_exhausted:
        return H.HEALING
    open_ = s.goals_pending + s.goals_active
    if state is H.RESTING:
        if s.budget_exhausted:
            return None
        if open_ > 0:
            return H.EXECUTING
        return H.IMPROVING if s.improving_budget or s.contemplation_due else None
    if state is H.EXECUTING:
        return H.RESTING if s.budget_exhausted or open_ == 0 else None
    if open_ > 0:
        return H.EXECUTING
    if s.budget_exhausted:
        return H.RESTING
    if state is H.IMPROVING and s.improving_left == 0 and s.contemplation_due:
        return H.CONTEMPLATING
    return None


def test_every_state_has_its_transitions_and_reaches_resting() -> None:
    assert set(states.TRANSITIONS) == set(HubState)
    for state, targets in states.TRANSITIONS.items():
        assert state not in targets
        assert state is H.RESTING or H.RESTING in targets  # forced moves obey the table


@pytest.mark.parametrize("state", list(HubState))
def test_rules_match_the_inventory_for_every_signal_combination(state: HubState) -> None:
    cases = every_signals()
    assert len(cases) == 512
    for s in cases:
        to = rules.next_state(state, s)
        assert to == expected(state, s), (state, s)
        if to is not None:
            assert to in states.TRANSITIONS[state], (state, to)  # rules never ask a refused move


def test_every_rule_can_fire() -> None:
    fired = {
        rule
        for state in HubState
        for s in every_signals()
        if (rule := rules.decide(state, s)) is not None
    }
    assert fired == set(rules.RULES)


CALM = Signals()
FIRST_MATCH: list[tuple[HubState, Signals, str | None, HubState | None]] = [
    # healing stays whatever else holds
    (H.HEALING, Signals(critical_issues=1, goals_pending=1), "healing", None),
    (H.HEALING, CALM, "healing", None),
    # critical issues come before everything else in every other state
    (H.RESTING, Signals(critical_issues=1, goals_pending=1), "critical_issues", H.HEALING),
    (H.EXECUTING, Signals(critical_issues=1, budget_exhausted=True), "critical_issues", H.HEALING),
    (H.IMPROVING, Signals(critical_issues=1, goals_active=1), "critical_issues", H.HEALING),
    (H.CONTEMPLATING, Signals(critical_issues=1), "critical_issues", H.HEALING),
    # ... unless healing is cooling down or has used its attempts
    (
        H.RESTING,
        Signals(critical_issues=1, healing_cooldown=True, goals_pending=1),
        "goals_open",
        H.EXECUTING,
    ),
    (H.EXECUTING, Signals(critical_issues=1, healing_exhausted=True), "goals_done", H.RESTING),
    # resting: a spent budget holds it even with goals waiting
    (H.RESTING, Signals(budget_exhausted=True, goals_pending=1), "budget_exhausted", None),
    (H.RESTING, Signals(goals_pending=1), "goals_open", H.EXECUTING),
    (H.RESTING, Signals(goals_active=1), "goals_open", H.EXECUTING),  # the driver took it already
    (H.RESTING, Signals(goals_pending=1, improving_budget=True), "goals_open", H.EXECUTING),
    (H.RESTING, Signals(improving_budget=True), "nothing_to_do", H.IMPROVING),
    (H.RESTING, CALM, None, None),
    # executing: a spent budget before the goal count
    (H.EXECUTING, Signals(budget_exhausted=True, goals_active=1), "budget_exhausted", H.RESTING),
    (H.EXECUTING, CALM, "goals_done", H.RESTING),
    (H.EXECUTING, Signals(goals_pending=1), None, None),
    (H.EXECUTING, Signals(goals_active=1), None, None),
    # improving and contemplating: goals come before a spent budget
    (H.IMPROVING, Signals(goals_pending=1, budget_exhausted=True), "goals_open", H.EXECUTING),
    (H.CONTEMPLATING, Signals(goals_active=1, budget_exhausted=True), "goals_open", H.EXECUTING),
    (H.IMPROVING, Signals(budget_exhausted=True), "budget_exhausted", H.RESTING),
    (H.CONTEMPLATING, Signals(budget_exhausted=True), "budget_exhausted", H.RESTING),
    (H.IMPROVING, CALM, None, None),
    (H.CONTEMPLATING, Signals(improving_budget=True), None, None),
    # contemplation: due, it takes a resting hub through improving once improving is done
    (H.RESTING, Signals(contemplation_due=True), "nothing_to_do", H.IMPROVING),
    (H.RESTING, Signals(contemplation_due=True, goals_pending=1), "goals_open", H.EXECUTING),
    (H.IMPROVING, Signals(contemplation_due=True), "improving_done", H.CONTEMPLATING),
    (H.IMPROVING, Signals(contemplation_due=True, improving_left=2), None, None),
    (H.IMPROVING, Signals(contemplation_due=True, goals_active=1), "goals_open", H.EXECUTING),
    (H.CONTEMPLATING, Signals(contemplation_due=True), None, None),  # its cycle ends it
]


@pytest.mark.parametrize(("state", "signals", "rule", "to"), FIRST_MATCH)
def test_the_first_rule_that_applies_decides(
    state: HubState, signals: Signals, rule: str | None, to: HubState | None
) -> None:
    decided = rules.decide(state, signals)
    assert (decided and decided.name) == rule
    assert rules.next_state(state, signals) == to


def test_with_the_signals_of_today_only_goals_move_the_hub() -> None:
    """Improvement, contemplation and healing have no work yet: nothing reaches them."""
    reached = {
        rules.next_state(state, Signals(goals_pending=p, goals_active=a))
        for state in (H.RESTING, H.EXECUTING)
        for p, a in itertools.product((0, 1), repeat=2)
    }
    assert reached == {H.EXECUTING, H.RESTING, None}
