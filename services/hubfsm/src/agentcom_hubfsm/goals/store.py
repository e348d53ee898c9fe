"""The goal rows: create, read, page, move (through the common transition writer)."""

import secrets
from typing import Any

from sqlalchemy import Row, func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from agentcom_common import outbox, subjects, transitions
from agentcom_common.contracts.github import PrRound
from agentcom_common.contracts.hub import (
    GoalDetail,
    GoalState,
    GoalTask,
    GoalTransition,
    GoalView,
    SubmitGoal,
    Verification,
)
from agentcom_common.contracts.task import TaskState
from agentcom_hubfsm.goals import states
from agentcom_hubfsm.tables import (
    goal_history,
    goal_tasks,
    goals,
    outbox_table,
    pr_rounds,
    verifications,
)

DONE_TASK: frozenset[str] = frozenset({TaskState.COMPLETED.value})
OPEN_PLAN: frozenset[str] = frozenset(
    {GoalState.AWAITING_APPROVAL.value, GoalState.EXECUTING.value}
)


def _event(
    moved: transitions.Moved[GoalState], to: GoalState, reason: str, actor: str
) -> tuple[str, GoalTransition]:
    body = GoalTransition(
        goal_id=moved.row.id,
        from_state=moved.previous,
        to_state=to,
        reason=reason,
        actor=actor,
        at=moved.at,
    )
    return subjects.event("goal", to.value), body


MACHINE = transitions.Machine(
    name="goal",
    states=GoalState,
    transitions=states.TRANSITIONS,
    table=goals,
    history=goal_history,
    key="goal_id",
    outbox=outbox_table,
    event=_event,
)


def new_id() -> str:
    return f"goal-{secrets.token_hex(8)}"


async def create(conn: AsyncConnection, body: SubmitGoal, actor: str) -> tuple[Row[Any], bool]:
    """Insert the goal and its creation record; with a `client_key` already used, return the
    first goal instead (and False: nothing was created)."""
    values = {
        "id": new_id(),
        "state": GoalState.SUBMITTED.value,
        "title": body.title,
        "description": body.description,
        "success_criteria": list(body.success_criteria),
        "repo": body.repo,
        "priority": body.priority.value,
        "budget_tokens": body.budget_tokens,
        "budget_usd": body.budget_usd,
        "autonomy": body.autonomy.value,
        "source": body.source,
        "link": body.link,
        "created_by": actor,
        "client_key": body.client_key,
        "reason": "submitted",
    }
    stmt = pg_insert(goals).values(values).returning(*goals.c)
    if body.client_key is not None:
        stmt = stmt.on_conflict_do_nothing(
            index_elements=["client_key"], index_where=goals.c.client_key.is_not(None)
        )
    row = (await conn.execute(stmt)).one_or_none()
    if row is None:  # the key was taken: the first goal stands
        first = (
            await conn.execute(select(goals).where(goals.c.client_key == body.client_key))
        ).one()
        return first, False
    await transitions.record(
        conn, MACHINE, row.id, None, GoalState.SUBMITTED, reason="submitted", actor=actor
    )
    created = GoalTransition(
        goal_id=row.id,
        from_state=None,
        to_state=GoalState.SUBMITTED,
        reason="submitted",
        actor=actor,
        at=row.created_at,
    )
    await outbox.add(conn, outbox_table, subjects.event("goal", "submitted"), created)
    return row, True


async def get(conn: AsyncConnection, goal_id: str, *, lock: bool = False) -> Row[Any] | None:
    stmt = select(goals).where(goals.c.id == goal_id)
    if lock:
        stmt = stmt.with_for_update()
    return (await conn.execute(stmt)).one_or_none()


async def counts(conn: AsyncConnection, rows: list[Row[Any]]) -> dict[str, tuple[int, int]]:
    """(tasks completed, tasks in all) per goal; see `tally`."""
    if not rows:
        return {}
    found = await conn.execute(
        select(goal_tasks.c.goal_id, goal_tasks.c.key, goal_tasks.c.state).where(
            goal_tasks.c.goal_id.in_([r.id for r in rows])
        )
    )
    tasks: dict[str, list[tuple[str, str]]] = {}
    for goal_id, key, state in found:
        tasks.setdefault(goal_id, []).append((key, state))
    return {r.id: tally(r, tasks.get(r.id, [])) for r in rows}


def tally(row: Row[Any], tasks: list[tuple[str, str]]) -> tuple[int, int]:
    """(tasks completed, tasks in all) of a goal from its (key, state) tasks. While its plan
    is approved or running, the planned tasks not submitted yet count too: a dependent task is
    submitted only once its dependencies finished (see the driver)."""
    done = sum(1 for _, state in tasks if state in DONE_TASK)
    total = len(tasks)
    if row.plan and row.verify_round == 0 and row.state in OPEN_PLAN:
        prefix = f"{row.id}:{row.attempt}:0:"
        total += max(0, len(row.plan["tasks"]) - sum(k.startswith(prefix) for k, _ in tasks))
    return done, total


def view(row: Row[Any], done: int = 0, total: int = 0) -> GoalView:
    return GoalView(
        id=row.id,
        state=GoalState(row.state),
        title=row.title,
        description=row.description,
        success_criteria=row.success_criteria,
        repo=row.repo,
        priority=row.priority,
        budget_tokens=row.budget_tokens,
        budget_usd=row.budget_usd,
        autonomy=row.autonomy,
        source=row.source,
        link=row.link,
        created_by=row.created_by,
        attempt=row.attempt,
        reason=row.reason,
        plan=row.plan,
        plan_errors=row.plan_errors,
        cost_tokens=row.cost_tokens,
        cost_usd=row.cost_usd,
        tasks_done=done,
        tasks_total=total,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def detail(conn: AsyncConnection, row: Row[Any]) -> GoalDetail:
    task_rows = (
        await conn.execute(
            select(goal_tasks)
            .where(goal_tasks.c.goal_id == row.id)
            .order_by(goal_tasks.c.attempt, goal_tasks.c.key)
        )
    ).all()
    checks = (
        await conn.execute(
            select(verifications)
            .where(verifications.c.goal_id == row.id)
            .order_by(verifications.c.round)
        )
    ).all()
    moves = (
        await conn.execute(
            select(goal_history).where(goal_history.c.goal_id == row.id).order_by(goal_history.c.id)
        )
    ).all()
    rounds = (
        await conn.execute(
            select(pr_rounds).where(pr_rounds.c.goal_id == row.id).order_by(pr_rounds.c.id)
        )
    ).all()
    tasks = [
        GoalTask(task_id=t.task_id, key=t.key, title=t.title, state=t.state, kind=t.kind)
        for t in task_rows
    ]
    base = view(row, *tally(row, [(t.key, t.state.value) for t in tasks]))
    return GoalDetail(
        **base.model_dump(),
        tasks=tasks,
        verifications=[
            Verification(round=v.round, passed=v.passed, report=v.report, at=v.at) for v in checks
        ],
        history=[
            GoalTransition(
                goal_id=m.goal_id,
                from_state=m.from_state,
                to_state=m.to_state,
                reason=m.reason,
                actor=m.actor,
                at=m.at,
            )
            for m in moves
        ],
        pr_rounds=[
            PrRound(
                repo=r.repo,
                number=r.number,
                round=r.round,
                kind=r.kind,
                summary=r.summary,
                context=r.context,
                task_id=r.task_id,
                escalated=r.escalated,
                at=r.at,
            )
            for r in rounds
        ],
    )


async def page(
    conn: AsyncConnection,
    *,
    state: GoalState | None,
    repo: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[GoalView], str | None]:
    """Goals newest first; `next_cursor` is the last one's `seq`."""
    stmt = select(goals).order_by(goals.c.seq.desc()).limit(limit + 1)
    if state is not None:
        stmt = stmt.where(goals.c.state == state.value)
    if repo is not None:
        stmt = stmt.where(goals.c.repo == repo)
    if cursor is not None:
        stmt = stmt.where(goals.c.seq < int(cursor))
    rows = (await conn.execute(stmt)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    tallied = await counts(conn, list(rows))
    found = [view(r, *tallied[r.id]) for r in rows]
    return found, str(rows[-1].seq) if more and rows else None


async def add_tasks(
    conn: AsyncConnection,
    goal_id: str,
    attempt: int,
    kind: str,
    tasks: list[tuple[str, str, str, str]],
) -> None:
    """Record the tasks submitted for a goal: (task id, key, title, state) each; a repeat of
    the same submit (same keys) changes nothing."""
    if not tasks:
        return
    stmt = pg_insert(goal_tasks).values(
        [
            {
                "task_id": task_id,
                "goal_id": goal_id,
                "key": key,
                "attempt": attempt,
                "title": title,
                "kind": kind,
                "state": state,
            }
            for task_id, key, title, state in tasks
        ]
    )
    await conn.execute(stmt.on_conflict_do_nothing())


async def count_by_state(conn: AsyncConnection) -> dict[str, int]:
    rows = await conn.execute(select(goals.c.state, func.count()).group_by(goals.c.state))
    return {r[0]: int(r[1]) for r in rows}


async def count_verifications(conn: AsyncConnection) -> dict[bool, int]:
    """Verification rounds ever recorded, by whether they passed (rows are never deleted
    while their goal lives)."""
    rows = await conn.execute(
        select(verifications.c.passed, func.count()).group_by(verifications.c.passed)
    )
    return {bool(r[0]): int(r[1]) for r in rows}


async def add_verification(
    conn: AsyncConnection, goal_id: str, passed: bool, report: dict[str, Any]
) -> None:
    """Record a verification as the goal's next round (1, 2, ... across attempts)."""
    following = (
        select(func.coalesce(func.max(verifications.c.round), 0) + 1)
        .where(verifications.c.goal_id == goal_id)
        .scalar_subquery()
    )
    await conn.execute(
        insert(verifications).values(goal_id=goal_id, round=following, passed=passed, report=report)
    )
