"""What a person (HTTP, CLI) or a service (NATS) may do with goals.

Idempotency: `submit` with a `client_key` returns the first goal on a repeat; `cancel` and
`retry` are guarded moves, so a repeat is a 409 `transition_refused` naming the state.
Cancelling a goal also cancels its unfinished tasks at the queue; that part runs after the
commit in the driver (`goals.driver`), which retries it until the queue has them all.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, Table
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import transitions
from agentcom_common.contracts.hub import (
    GoalDetail,
    GoalRef,
    GoalState,
    GoalView,
    ListGoals,
    SubmitGoal,
)
from agentcom_common.errors import ConflictError, InvalidError, NotFoundError
from agentcom_hubfsm.goals import states, store

PlanCheck = Callable[[str, dict[str, Any]], Awaitable[list[str]]]
"""(repo, plan) -> every rule the plan breaks against that repo's files ([] = good)."""


@dataclass(slots=True)
class Goals:
    engine: AsyncEngine
    outbox: Table
    wake: asyncio.Event
    """Set when a goal has new work for the driver (submitted, approved, cancelled); one
    event per process, shared by the routes, the RPC handlers and the driver."""
    check_plan: PlanCheck | None = None


async def submit(g: Goals, body: SubmitGoal, actor: str) -> tuple[GoalView, bool]:
    """The goal, and whether this call created it (False: its `client_key` was used)."""
    async with g.engine.begin() as conn:
        row, created = await store.create(conn, body, actor)
    if created:
        g.wake.set()
    return store.view(row), created


async def get(g: Goals, goal_id: str) -> GoalDetail:
    async with g.engine.connect() as conn:
        row = await store.get(conn, goal_id)
        if row is None:
            raise NotFoundError(f"goal {goal_id} does not exist", code="goal_not_found")
        return await store.detail(conn, row)


async def page(g: Goals, q: ListGoals) -> tuple[list[GoalView], str | None]:
    async with g.engine.connect() as conn:
        return await store.page(conn, state=q.state, repo=q.repo, cursor=q.cursor, limit=q.limit)


async def _move(
    g: Goals,
    ref: GoalRef,
    to: GoalState,
    allowed: frozenset[GoalState],
    verb: str,
    actor: str,
    more: Callable[[Row[Any]], dict[str, Any]] | None = None,
) -> GoalDetail:
    async with g.engine.begin() as conn:
        row = await store.get(conn, ref.goal_id, lock=True)
        if row is None:
            raise NotFoundError(f"goal {ref.goal_id} does not exist", code="goal_not_found")
        if GoalState(row.state) not in allowed:
            raise ConflictError(
                f"goal {ref.goal_id} is {row.state}; only a goal that is "
                f"{', '.join(sorted(s.value for s in allowed))} can be {verb}",
                code="transition_refused",
            )
        values: dict[str, object] = {"reason": ref.reason or verb}
        if to is GoalState.SUBMITTED:  # a retry plans afresh
            values |= {"plan": None, "plan_errors": [], "verify_round": 0, "replans": 0}
        if more is not None:
            values |= more(row)
        moved = await transitions.move(
            conn,
            store.MACHINE,
            ref.goal_id,
            to,
            reason=ref.reason or verb,
            actor=actor,
            values=values,
        )
        detail = await store.detail(conn, moved.row)
    g.wake.set()
    return detail


async def cancel(g: Goals, ref: GoalRef, actor: str) -> GoalDetail:
    return await _move(g, ref, GoalState.CANCELLED, states.CANCELLABLE, "cancelled", actor)


async def retry(g: Goals, ref: GoalRef, actor: str) -> GoalDetail:
    return await _move(g, ref, GoalState.SUBMITTED, states.RETRYABLE, "retried", actor)


APPROVABLE = frozenset({GoalState.AWAITING_APPROVAL})


async def approve(
    g: Goals, ref: GoalRef, actor: str, plan: dict[str, Any] | None = None
) -> GoalDetail:
    """Run the plan that waits for approval, or `plan` instead (checked like the model's:
    409 `invalid_plan` with every error in `detail`: well-formed, refused by the rules)."""
    if plan is None:
        return await _move(g, ref, GoalState.EXECUTING, APPROVABLE, "approved", actor)
    async with g.engine.connect() as conn:
        row = await store.get(conn, ref.goal_id)
    if row is None:
        raise NotFoundError(f"goal {ref.goal_id} does not exist", code="goal_not_found")
    if g.check_plan is None:
        raise ConflictError("this hub cannot check an edited plan", code="not_available")
    if errors := await g.check_plan(row.repo, plan):
        raise ConflictError("; ".join(errors)[:4000], code="invalid_plan")
    return await _move(
        g,
        ref,
        GoalState.EXECUTING,
        APPROVABLE,
        "approved with an edited plan",
        actor,
        lambda _row: {"plan": plan},
    )


async def reject(g: Goals, ref: GoalRef, actor: str) -> GoalDetail:
    """Plan again; the reason is told to the planner (`feedback`)."""
    if not ref.reason:
        raise InvalidError("a rejection needs a reason for the next plan", field="reason")
    note = f"A person rejected an earlier plan: {ref.reason}"

    def replan(row: Row[Any]) -> dict[str, Any]:
        feedback: list[str] = [*row.feedback, note]
        return {"plan": None, "attempt": int(row.attempt) + 1, "feedback": feedback}

    return await _move(g, ref, GoalState.PLANNING, APPROVABLE, "plan rejected", actor, replan)
