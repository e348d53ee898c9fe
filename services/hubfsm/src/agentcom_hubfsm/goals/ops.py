"""What a person (HTTP, CLI) or a service (NATS) may do with goals.

Idempotency: `submit` with a `client_key` returns the first goal on a repeat; `cancel` and
`retry` are guarded moves, so a repeat is a 409 `transition_refused` naming the state.
Cancelling a goal also cancels its unfinished tasks at the queue; that part runs after the
commit in the driver (`goals.driver`), which retries it until the queue has them all.
"""

import asyncio
from dataclasses import dataclass

from sqlalchemy import Table
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
from agentcom_common.errors import ConflictError, NotFoundError
from agentcom_hubfsm.goals import states, store


@dataclass(slots=True)
class Goals:
    engine: AsyncEngine
    outbox: Table
    wake: asyncio.Event
    """Set when a goal has new work for the driver (submitted, approved, cancelled); one
    event per process, shared by the routes, the RPC handlers and the driver."""


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
    g: Goals, ref: GoalRef, to: GoalState, allowed: frozenset[GoalState], verb: str, actor: str
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
