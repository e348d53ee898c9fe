"""HTTP API of the hub: /api/goals. Parse, call ops, answer."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from pydantic import Field

from agentcom_common import service
from agentcom_common.contracts.base import Request as RequestBody
from agentcom_common.contracts.hub import (
    GoalDetail,
    GoalPage,
    GoalRef,
    GoalState,
    GoalView,
    ListGoals,
    RejectPlan,
    SubmitGoal,
)
from agentcom_common.contracts.plan import Plan
from agentcom_common.openapi import errors
from agentcom_common.web import Admin, Viewer
from agentcom_hubfsm.goals import ops
from agentcom_hubfsm.own import Own

GOAL_ID = r"^goal-[0-9a-f]{16}$"
CURSOR = r"^[0-9]{1,18}$"


def goals_of(request: Request) -> ops.Goals:
    return service.own(request, Own).goals


G = Annotated[ops.Goals, Depends(goals_of)]
goals = APIRouter(prefix="/api/goals", tags=["goals"])


class ApprovePlan(RequestBody):
    """Body of `POST /api/goals/{id}/plan/approve`: empty runs the plan as it is."""

    plan: Plan | None = Field(
        default=None, description="An edited plan, checked like the model's before it runs."
    )


@goals.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={200: {"model": GoalView, "description": "The goal this `client_key` created."}},
)
async def submit_goal(body: SubmitGoal, g: G, who: Admin, response: Response) -> GoalView:
    """Submit a goal: the hub plans it into tasks, runs them and checks the result.

    With `client_key`, a repeat answers 200 with the first goal instead of creating another.
    Errors: 422 `invalid_field` (names the field).
    """
    goal, created = await ops.submit(g, body, who.name)
    if not created:
        response.status_code = status.HTTP_200_OK
    return goal


@goals.get("")
async def list_goals(
    g: G,
    _who: Viewer,
    state: GoalState | None = None,
    repo: Annotated[str | None, Query(min_length=1, max_length=500)] = None,
    cursor: Annotated[str | None, Query(pattern=CURSOR)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> GoalPage:
    """List goals newest first, filtered; pass `next_cursor` back as `cursor` for the next page."""
    found, next_cursor = await ops.page(
        g, ListGoals(state=state, repo=repo, cursor=cursor, limit=limit)
    )
    return GoalPage(goals=found, next_cursor=next_cursor)


@goals.get("/{goal_id}", responses=errors(404))
async def get_goal(
    goal_id: Annotated[str, Path(pattern=GOAL_ID)], g: G, _who: Viewer
) -> GoalDetail:
    """A goal with its plan, its tasks and their states, its verifications, cost and history.

    Errors: 404 `goal_not_found`.
    """
    return await ops.get(g, goal_id)


@goals.post("/{goal_id}/cancel", responses=errors(404, 409))
async def cancel_goal(
    goal_id: Annotated[str, Path(pattern=GOAL_ID)],
    g: G,
    who: Admin,
    reason: Annotated[str, Query(max_length=500)] = "",
) -> GoalDetail:
    """Cancel a goal that is not finished; its unfinished tasks are cancelled at the queue.

    Errors: 404 `goal_not_found`, 409 `transition_refused` (complete, failed or cancelled).
    """
    return await ops.cancel(g, GoalRef(goal_id=goal_id, reason=reason), who.name)


@goals.post("/{goal_id}/retry", responses=errors(404, 409))
async def retry_goal(
    goal_id: Annotated[str, Path(pattern=GOAL_ID)],
    g: G,
    who: Admin,
    reason: Annotated[str, Query(max_length=500)] = "",
) -> GoalDetail:
    """Plan a failed or `needs_review` goal again from the start (a new attempt).

    Errors: 404 `goal_not_found`, 409 `transition_refused` (the goal is not failed or
    `needs_review`).
    """
    return await ops.retry(g, GoalRef(goal_id=goal_id, reason=reason), who.name)


@goals.post("/{goal_id}/plan/approve", responses=errors(404, 409))
async def approve_plan(
    goal_id: Annotated[str, Path(pattern=GOAL_ID)], g: G, who: Admin, body: ApprovePlan
) -> GoalDetail:
    """Run the plan of a goal in `awaiting_approval`, or the edited `plan` given instead.

    Errors: 404 `goal_not_found`, 409 `transition_refused` (no plan waits) or `invalid_plan`
    (the edited plan breaks a rule against the repo; `detail` lists every one).
    """
    edited = None if body.plan is None else body.plan.model_dump(mode="json")
    return await ops.approve(g, GoalRef(goal_id=goal_id), who.name, edited)


@goals.post("/{goal_id}/plan/reject", responses=errors(404, 409))
async def reject_plan(
    goal_id: Annotated[str, Path(pattern=GOAL_ID)], g: G, who: Admin, body: RejectPlan
) -> GoalDetail:
    """Refuse the plan waiting for approval: the goal is planned again, told the reason.

    Errors: 404 `goal_not_found`, 409 `transition_refused` (no plan waits).
    """
    return await ops.reject(g, GoalRef(goal_id=goal_id, reason=body.reason[:500]), who.name)
