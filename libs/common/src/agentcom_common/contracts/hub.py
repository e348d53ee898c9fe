"""Hub contracts: the hub's state, which other services follow (the LLM budgets per state)."""

from datetime import datetime
from typing import Final, Literal, get_args

from agentcom_common.contracts.base import Contract

HubState = Literal["resting", "executing", "improving", "contemplating", "healing"]
HUB_STATES: Final = get_args(HubState)


class HubStateChanged(Contract):
    """Body of `agentcom.evt.hub.state_changed`: the hub entered `state`.

    Only services may publish on `agentcom.evt.>` (an agent's NATS user is confined to its own
    subjects), so a follower may take the newest one as the hub's state."""

    state: HubState
    at: datetime
