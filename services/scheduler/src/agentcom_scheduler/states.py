"""The per-agent state machine as data.

An agent is `offline` until its sidecar says hello, `idle` while it can take work, `assigned`
between an assignment and its acceptance, `working` until it reports an outcome, and `blocked`
when its sidecar says it cannot take work (its heartbeats carry why: disk full, no executor,
workspaces unwritable) until its heartbeats say it can again; an assignment that reached it
meanwhile is rejected (`agent_blocked`) and goes back without a retry. Any state may drop to `offline` (missed heartbeats); the task it
held goes back to the queue.
"""

from types import MappingProxyType
from typing import Final

from agentcom_common.contracts.agent import AgentState

A = AgentState

TRANSITIONS: Final = MappingProxyType[AgentState, frozenset[AgentState]](
    {
        A.OFFLINE: frozenset({A.IDLE}),
        A.IDLE: frozenset({A.ASSIGNED, A.BLOCKED, A.OFFLINE}),
        A.ASSIGNED: frozenset({A.WORKING, A.IDLE, A.BLOCKED, A.OFFLINE}),
        A.WORKING: frozenset({A.IDLE, A.BLOCKED, A.OFFLINE}),
        A.BLOCKED: frozenset({A.WORKING, A.IDLE, A.OFFLINE}),
    }
)


def sources(target: AgentState) -> frozenset[AgentState]:
    """States `target` may be entered from; the store's guarded UPDATE uses them."""
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)
