"""The goal state machine as data (the writer is `agentcom_common.transitions`).

    submitted -> planning -> (awaiting_approval) -> executing -> verifying -> complete
                    ^               |  (rejected)                    |  (gaps: follow-ups)
                    +---------------+                  executing <---+
    any unfinished state -> cancelled; planning/executing/verifying -> failed | needs_review;
    failed / needs_review -> submitted (a person's retry: a fresh plan, attempt + 1)
    complete -> needs_review (its pull request used up its feedback rounds: `webhooks`)

`executing -> planning` is the bounded re-plan after a task dead-letters.
"""

from types import MappingProxyType
from typing import Final

from agentcom_common.contracts.hub import GoalState

G = GoalState

TRANSITIONS: Final = MappingProxyType[GoalState, frozenset[GoalState]](
    {
        G.SUBMITTED: frozenset({G.PLANNING, G.CANCELLED}),
        G.PLANNING: frozenset(
            {G.AWAITING_APPROVAL, G.EXECUTING, G.FAILED, G.NEEDS_REVIEW, G.CANCELLED}
        ),
        G.AWAITING_APPROVAL: frozenset({G.EXECUTING, G.PLANNING, G.CANCELLED}),
        G.EXECUTING: frozenset({G.VERIFYING, G.PLANNING, G.FAILED, G.NEEDS_REVIEW, G.CANCELLED}),
        G.VERIFYING: frozenset({G.COMPLETE, G.EXECUTING, G.FAILED, G.NEEDS_REVIEW, G.CANCELLED}),
        # a complete goal's pull request that used up its feedback rounds waits for a person
        G.COMPLETE: frozenset({G.NEEDS_REVIEW}),
        G.FAILED: frozenset({G.SUBMITTED}),
        G.NEEDS_REVIEW: frozenset({G.SUBMITTED, G.CANCELLED}),
        G.CANCELLED: frozenset[GoalState](),
    }
)

TERMINAL: Final = frozenset({G.COMPLETE, G.FAILED, G.CANCELLED})
UNFINISHED: Final = frozenset(s for s in GoalState if s not in TERMINAL and s is not G.NEEDS_REVIEW)
CANCELLABLE: Final = frozenset(s for s, targets in TRANSITIONS.items() if G.CANCELLED in targets)
RETRYABLE: Final = frozenset(s for s, targets in TRANSITIONS.items() if G.SUBMITTED in targets)
