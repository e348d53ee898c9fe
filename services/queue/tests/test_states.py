from agentcom_common.contracts.task import TaskState
from agentcom_queue import states

S = TaskState


def test_every_state_has_a_row() -> None:
    assert set(states.TRANSITIONS) == set(TaskState)


def test_ended_states_have_no_exit_but_a_hand_retry() -> None:
    assert states.TRANSITIONS[S.COMPLETED] == frozenset()
    assert states.TRANSITIONS[S.PARTIAL_PASS] == frozenset()
    assert states.TRANSITIONS[S.CANCELLED] == frozenset()
    assert states.TRANSITIONS[S.DEAD_LETTER] == {S.QUEUED}


def test_every_unfinished_state_can_be_cancelled() -> None:
    assert {S.WAITING, S.QUEUED, S.ASSIGNED, S.WORKING} == states.CANCELLABLE


def test_sources_are_the_inverse_of_transitions() -> None:
    for target in TaskState:
        for source in TaskState:
            assert (source in states.sources(target)) == states.allowed(source, target)


def test_an_outcome_may_follow_assigned_or_working() -> None:
    for outcome in (S.COMPLETED, S.PARTIAL_PASS, S.FAILED):
        assert states.sources(outcome) == {S.ASSIGNED, S.WORKING}
