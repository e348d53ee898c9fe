"""NATS RPC of the hub: agentcom.rpc.hub.submit_goal|goal|list_goals|cancel_goal|retry_goal.

Same ops as the HTTP API, through `micro.endpoint`. NATS callers are services on the hub's own
account (only services reach `agentcom.rpc.>`), so the actor is `nats`.
"""

from agentcom_common import micro
from agentcom_common.contracts.hub import (
    GoalDetail,
    GoalPage,
    GoalRef,
    GoalView,
    ListGoals,
    SubmitGoal,
)
from agentcom_common.service import Resources
from agentcom_hubfsm.goals import ops

ACTOR = "nats"


async def register(res: Resources, g: ops.Goals) -> None:
    async def submit_goal(body: SubmitGoal) -> GoalView:
        source = body.source if body.source != "http" else "nats"
        goal, _ = await ops.submit(g, body.model_copy(update={"source": source}), ACTOR)
        return goal

    async def goal(body: GoalRef) -> GoalDetail:
        return await ops.get(g, body.goal_id)

    async def list_goals(body: ListGoals) -> GoalPage:
        found, next_cursor = await ops.page(g, body)
        return GoalPage(goals=found, next_cursor=next_cursor)

    async def cancel_goal(body: GoalRef) -> GoalDetail:
        return await ops.cancel(g, body, ACTOR)

    async def retry_goal(body: GoalRef) -> GoalDetail:
        return await ops.retry(g, body, ACTOR)

    depth = res.settings.json_max_depth
    for name, handler in (
        ("submit_goal", micro.endpoint(SubmitGoal, submit_goal, max_depth=depth)),
        ("goal", micro.endpoint(GoalRef, goal, max_depth=depth)),
        ("list_goals", micro.endpoint(ListGoals, list_goals, max_depth=depth)),
        ("cancel_goal", micro.endpoint(GoalRef, cancel_goal, max_depth=depth)),
        ("retry_goal", micro.endpoint(GoalRef, retry_goal, max_depth=depth)),
    ):
        await res.group.add_endpoint(name=name, handler=handler)
