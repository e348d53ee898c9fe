"""The hub state machine as data (the writer is `agentcom_common.transitions`, in `store`).

    resting ──> executing | improving | healing
    executing ──> resting | healing
    improving ──> resting | executing | contemplating | healing
    contemplating ──> resting | executing | healing
    healing ──> resting

Every state but resting reaches resting, so a forced move (the watchdog, `stop`) obeys this
table too. `paused` is a flag in the hub row, not a state.
"""

from types import MappingProxyType
from typing import Final

from agentcom_common.contracts.hub import HubState

H = HubState

TRANSITIONS: Final = MappingProxyType[HubState, frozenset[HubState]](
    {
        H.RESTING: frozenset({H.EXECUTING, H.IMPROVING, H.HEALING}),
        H.EXECUTING: frozenset({H.RESTING, H.HEALING}),
        H.IMPROVING: frozenset({H.RESTING, H.EXECUTING, H.CONTEMPLATING, H.HEALING}),
        H.CONTEMPLATING: frozenset({H.RESTING, H.EXECUTING, H.HEALING}),
        H.HEALING: frozenset({H.RESTING}),
    }
)

START: Final = H.RESTING
# a move from resting into one of these starts a new cycle (the hub's count of work periods)
CYCLE_STARTS: Final = frozenset({H.EXECUTING, H.IMPROVING})
