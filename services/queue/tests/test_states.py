from agentcom_common.contracts.task import TaskState
from agentcom_queue import states

S = TaskState


def test_every_state_has_a_row() -> None:
    assert set(states.TRANSITIONS) == set(TaskState)


def test_ended_states_have_no_exit_but_a_persons_retry_or_acceptance() -> None:
    assert states.TRANSITIONS[S.COMPLETED] == frozenset()
    assert states.TRANSITIONS[S.PARTIAL_PASS] == {S.QUEUED, S.COMPLETED}
    assert states.TRANSITIONS[S.CANCELLED] == frozenset()
    assert states.TRANSITIONS[S.DEAD_LETTER] == {S.QUEUED}
    assert {S.DEAD_LETTER, S.PARTIAL_PASS} == states.RETRYABLE


def test_every_unfinished_state_can_be_cancelled() -> None:
    assert {S.WAITING, S.QUEUED, S.ASSIGNED, S.WORKING} == states.CANCELLABLE


def test_sources_are_the_inverse_of_transitions() -> None:
    for target in TaskState:
        for source in TaskState:
            assert (source in states.sources(target)) == states.allowed(source, target)


def test_an_outcome_may_follow_assigned_or_working() -> None:
    for outcome in (S.COMPLETED, S.PARTIAL_PASS, S.FAILED):
        assert states.sources(outcome) & states.ACTIVE == {S.ASSIGNED, S.WORKING}
    assert states.sources(S.COMPLETED) - states.ACTIVE == {S.PARTIAL_PASS}  # a person accepts


def test_only_a_completed_dependency_is_met_and_the_others_that_ended_block() -> None:
    assert set(states.BLOCKING) == states.TERMINAL - {S.COMPLETED}
    assert states.blocked_reason("task-1", S.PARTIAL_PASS) == (
        "dependency task-1 ended partial_pass (accept or retry it to unblock)"
    )
