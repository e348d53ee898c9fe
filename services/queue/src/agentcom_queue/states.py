"""The task state machine as data.

Rules: a state change is allowed only along TRANSITIONS; `store.move` puts `sources(target)` in
the UPDATE's WHERE, which is the guard that holds when two writers race. Terminal states have
no exits except FAILED, which is a waypoint: it goes back to QUEUED while retries remain, else
to DEAD_LETTER. An agent's outcome (COMPLETED, PARTIAL_PASS, FAILED) may follow ASSIGNED or
WORKING: `accepted` is optional. DEAD_LETTER and PARTIAL_PASS may be retried by a person (back
to QUEUED), and a person may accept a PARTIAL_PASS as COMPLETED; the record is kept.

Dependencies: only COMPLETED satisfies one. A dependency in a BLOCKING state holds its waiting
dependents with a `blocked_reason` that names it and says what would unblock them.
"""

from types import MappingProxyType
from typing import Final

from agentcom_common.contracts.task import TaskState

S = TaskState

TRANSITIONS: Final = MappingProxyType[TaskState, frozenset[TaskState]](
    {
        S.WAITING: frozenset({S.QUEUED, S.CANCELLED}),
        S.QUEUED: frozenset({S.ASSIGNED, S.CANCELLED}),
        # an outcome may come straight from ASSIGNED: it proves the agent took the task, so a
        # pull worker can claim -> report completed (3 transitions) without `accepted`
        S.ASSIGNED: frozenset(
            {S.WORKING, S.COMPLETED, S.PARTIAL_PASS, S.FAILED, S.QUEUED, S.CANCELLED}
        ),  # QUEUED: never accepted
        S.WORKING: frozenset({S.COMPLETED, S.PARTIAL_PASS, S.FAILED, S.QUEUED, S.CANCELLED}),
        S.FAILED: frozenset({S.QUEUED, S.DEAD_LETTER}),
        S.DEAD_LETTER: frozenset({S.QUEUED}),  # a person's retry
        S.COMPLETED: frozenset[TaskState](),
        # a person's retry, or a person accepting the partial result (its dependents need one)
        S.PARTIAL_PASS: frozenset({S.QUEUED, S.COMPLETED}),
        S.CANCELLED: frozenset[TaskState](),
    }
)

TERMINAL: Final = frozenset({S.COMPLETED, S.PARTIAL_PASS, S.DEAD_LETTER, S.CANCELLED})
ACTIVE: Final = frozenset({S.ASSIGNED, S.WORKING})
CANCELLABLE: Final = frozenset(s for s, targets in TRANSITIONS.items() if S.CANCELLED in targets)
RETRYABLE: Final = frozenset({S.DEAD_LETTER, S.PARTIAL_PASS})  # by hand: POST .../retry

# a dependency in one of these states holds its waiting dependents; the reason says why
BLOCKING: Final = MappingProxyType[TaskState, str](
    {
        S.DEAD_LETTER: "was dead-lettered (retry it to unblock)",
        S.PARTIAL_PASS: "ended partial_pass (accept or retry it to unblock)",
        S.CANCELLED: "was cancelled",
    }
)


def blocked_reason(dependency: str, state: TaskState) -> str:
    """What a waiting task shows while `dependency` (in a BLOCKING state) holds it."""
    return f"dependency {dependency} {BLOCKING[state]}"


def sources(target: TaskState) -> frozenset[TaskState]:
    """States `target` may be entered from; store.py puts them in the UPDATE's WHERE."""
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)


def allowed(source: TaskState, target: TaskState) -> bool:
    return target in TRANSITIONS[source]
