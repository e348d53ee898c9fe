"""NATS RPC of the hub brain: agentcom.rpc.hub.state (the same op as GET /api/hub/state)."""

from agentcom_common import micro
from agentcom_common.contracts.hub import HubStateRequest, HubView
from agentcom_common.service import Resources
from agentcom_hubfsm.brain import ops


async def register(res: Resources, h: ops.Hub) -> None:
    async def state(_body: HubStateRequest) -> HubView:
        return await ops.state(h)

    await res.group.add_endpoint(
        name="state",
        handler=micro.endpoint(HubStateRequest, state, max_depth=res.settings.json_max_depth),
    )
