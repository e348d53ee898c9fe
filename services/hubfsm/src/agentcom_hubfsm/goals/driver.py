"""The goal driver: takes each goal through planning, submission, progress and verification.

Events wake it (a goal submitted or approved, a task event for one of its goals) and a sweep
every `hub_goal_sweep` guarantees progress when an event was missed. Each pass picks the goals
that have a step to take and runs one step per goal as tracked work (a goal is never stepped
twice at once); a model call never runs inside a transaction.

Every step is safe to repeat after a `kill -9` at any line, because what it decided is in the
goal row before it acts on it:
- planning: the plan is stored on the row (same attempt) before anything is submitted; a crash
  before that plans again (the model is asked again; nothing was created).
- submitting: tasks go to the queue with `client_key = <goal>:<attempt>:<round>:<n>`; a task
  is submitted once every task it depends on has finished, branched from their work (the
  branch a dependency pushed is known only then); a repeat returns the tasks made the first
  time, so a crash mid-submit never makes one twice. The submitted tasks are then recorded
  with their keys.
- verifying: the verdict and the goal's move commit together; a crash before that judges again.
- cancelling: the goal is cancelled first; its unfinished tasks are cancelled at the queue on
  every pass until none is left.
A model call that fails (gateway away, budget spent) is retried with backoff from the row's
`not_before`; it never fails the goal by itself.

Size: one job, stepping goals; each state's step sits beside the others because they share the
repeat-safety rules above and the pass that picks them.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agentcom_common import cancelling, subjects, transitions
from agentcom_common.contracts.hub import Autonomy, GoalState, HubState
from agentcom_common.contracts.plan import Plan
from agentcom_common.contracts.task import (
    LANE_ORDER,
    CommandSucceeds,
    Lane,
    SubmitTask,
    SubmitTasks,
    TaskState,
    TaskView,
)
from agentcom_common.errors import AgentcomError, TooManyRequestsError, UnavailableError
from agentcom_hubfsm.brain import store as brain_store
from agentcom_hubfsm.goals import plan as plans, store, verify
from agentcom_hubfsm.goals.planner import Planned, PlanOutcome
from agentcom_hubfsm.goals.planprompt import GoalBrief
from agentcom_hubfsm.tables import goal_tasks, goals, hub, outbox_table, verifications

log = logging.getLogger(__name__)

G = GoalState
STEPPED = (G.SUBMITTED, G.PLANNING, G.EXECUTING, G.VERIFYING)
MODEL_STEPS = frozenset({G.SUBMITTED.value, G.PLANNING.value, G.VERIFYING.value})
"""Steps that call a model: taken only while the hub is executing (see `_hub_executing`)."""
FINISHED_TASK = frozenset({TaskState.COMPLETED, TaskState.PARTIAL_PASS})
LOST_TASK = frozenset({TaskState.DEAD_LETTER, TaskState.CANCELLED})
TERMINAL_TASK = FINISHED_TASK | LOST_TASK
ACTOR = "hub"


class Queue(Protocol):
    """What the driver needs of the queue (`queueclient.QueueClient` over NATS)."""

    async def submit(self, body: SubmitTasks) -> list[str]: ...  # task ids, in order

    async def tasks_of(self, goal_id: str) -> list[TaskView]: ...

    async def cancel(self, task_id: str) -> None: ...


Planner = Callable[[GoalBrief], Awaitable[PlanOutcome]]


@dataclass
class Driver:
    engine: AsyncEngine
    queue: Queue
    planner: Planner
    chat: verify.Chat
    wake: asyncio.Event
    sweep: timedelta
    verify_retries: int
    replans: int
    backoff: timedelta
    _running: dict[str, asyncio.Task[None]] = field(default_factory=dict[str, asyncio.Task[None]])
    _progressed: set[str] = field(default_factory=set[str])
    """Goals whose step moved them on: the driver passes again when the step ends (a pass
    skips a goal while its step runs)."""
    _refreshed: dict[str, float] = field(default_factory=dict[str, float])
    """When each goal's tasks were last read from the queue (the sweep behind the events)."""

    async def run(self) -> None:
        while True:
            self.wake.clear()  # before the pass: a wake during it makes the wait return at once
            try:
                await self.pass_once()
            except Exception:  # Postgres or NATS away: the next pass tries again
                log.exception("goals.pass_failed")
            await cancelling.woken(self.wake, self.sweep.total_seconds())

    async def pass_once(self) -> None:
        async with self.engine.connect() as conn:
            stepped = [s.value for s in STEPPED]
            if not await _hub_executing(conn):
                stepped = [s for s in stepped if s not in MODEL_STEPS]
            due = (
                await conn.execute(
                    select(goals.c.id)
                    .where(goals.c.state.in_(stepped))
                    .where(goals.c.not_before <= func.now())
                    .order_by(goals.c.seq)
                )
            ).all()
            cancelled = (
                await conn.execute(
                    select(goal_tasks.c.goal_id)
                    .join(goals, goals.c.id == goal_tasks.c.goal_id)
                    .where(goals.c.state == G.CANCELLED.value)
                    .where(goal_tasks.c.state.not_in([s.value for s in TERMINAL_TASK]))
                    .distinct()
                )
            ).all()
        for (goal_id,) in [*due, *cancelled]:
            if goal_id not in self._running:
                task = asyncio.create_task(self._step_guarded(goal_id), name=f"goal-{goal_id}")
                self._running[goal_id] = task

    async def drain(self) -> None:
        """Wait for the steps in flight (tests, and a clean stop)."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def _step_guarded(self, goal_id: str) -> None:
        try:
            await self.step(goal_id)
        except (UnavailableError, TooManyRequestsError) as exc:
            await self._later(goal_id, exc)
        except Exception:
            log.exception("goal.step_failed", extra={"goal_id": goal_id})
            await self._later(goal_id, None)
        finally:
            self._running.pop(goal_id, None)
            if goal_id in self._progressed:
                self._progressed.discard(goal_id)
                self.wake.set()

    async def _later(self, goal_id: str, exc: AgentcomError | None) -> None:
        """Try this goal again after a backoff that grows with each failure in a row."""
        async with self.engine.begin() as conn:
            row = await store.get(conn, goal_id)
            if row is None:
                return
            delay = min(
                self.backoff.total_seconds() * 2**row.failures, self.backoff.total_seconds() * 10
            )
            if isinstance(exc, TooManyRequestsError):
                delay = max(delay, exc.retry_after)
            await conn.execute(
                update(goals)
                .where(goals.c.id == goal_id)
                .values(
                    failures=goals.c.failures + 1,
                    not_before=func.now() + timedelta(seconds=delay),
                    reason=goals.c.reason
                    if exc is None
                    else f"waiting to retry: {exc.code}: {exc.detail}"[:500],
                )
            )
        log.warning(
            "goal.retry_later",
            extra={"goal_id": goal_id, "error": exc.code if exc else "internal", "delay": delay},
        )

    async def step(self, goal_id: str) -> None:
        async with self.engine.connect() as conn:
            row = await store.get(conn, goal_id)
        if row is None:
            return
        state = G(row.state)
        if state is G.SUBMITTED:
            await self._move(row, G.PLANNING, "planning", attempt=row.attempt + 1, plan=None)
            await self.step(goal_id)
        elif state is G.PLANNING:
            await self._plan(row)
        elif state is G.EXECUTING:
            await self._execute(row)
        elif state is G.VERIFYING:
            await self._verify(row)
        elif state is G.CANCELLED:
            await self._cancel_tasks(row)

    async def _move(self, row: Row[Any], to: GoalState, reason: str, **values: Any) -> Row[Any]:
        async with self.engine.begin() as conn:
            moved = await transitions.move(
                conn,
                store.MACHINE,
                row.id,
                to,
                reason=reason,
                actor=ACTOR,
                values={"reason": reason[:500], "failures": 0, **values},
                sources=frozenset({G(row.state)}),
            )
        self._progressed.add(row.id)
        return moved.row

    async def _plan(self, row: Row[Any]) -> None:
        if row.plan is None:
            outcome = await self.planner(brief(row))
            tokens = outcome.usage.tokens_in + outcome.usage.tokens_out
            if not isinstance(outcome, Planned):
                errors = list(outcome.errors)
                await self._move(
                    row,
                    G.FAILED,
                    f"no good plan after {outcome.attempts} answers: {errors[0] if errors else '?'}",
                    plan_errors=errors,
                    cost_tokens=row.cost_tokens + tokens,
                    cost_usd=row.cost_usd + outcome.usage.cost_usd,
                )
                return
            async with self.engine.begin() as conn:  # the plan is kept before anything is made
                saved = (
                    await conn.execute(
                        update(goals)
                        .where(goals.c.id == row.id, goals.c.state == G.PLANNING.value)
                        .where(goals.c.attempt == row.attempt)
                        .values(
                            plan=outcome.plan.model_dump(mode="json"),
                            plan_errors=[],
                            cost_tokens=goals.c.cost_tokens + tokens,
                            cost_usd=goals.c.cost_usd + outcome.usage.cost_usd,
                            updated_at=func.now(),
                        )
                        .returning(*goals.c)
                    )
                ).one_or_none()
            if saved is None:  # cancelled meanwhile: the plan is not used
                return
            row = saved
        if row.autonomy == Autonomy.REVIEW_PLAN.value:
            await self._move(row, G.AWAITING_APPROVAL, "the plan waits for a person's approval")
        else:
            await self._move(row, G.EXECUTING, "plan made; submitting its tasks")

    async def _execute(self, row: Row[Any]) -> None:
        async with self.engine.connect() as conn:
            mine = (
                await conn.execute(
                    select(goal_tasks)
                    .where(goal_tasks.c.goal_id == row.id)
                    .where(goal_tasks.c.attempt == row.attempt)
                )
            ).all()
        prefix = f"{row.id}:{row.attempt}:{row.verify_round}:"
        current = {t.key: t for t in mine if t.key.startswith(prefix)}
        items = await self._items(row)
        ready = [
            (n, item)
            for n, item in enumerate(items)
            if f"{prefix}{n}" not in current
            and all(
                f"{prefix}{d}" in current
                and TaskState(current[f"{prefix}{d}"].state) in FINISHED_TASK
                for d in item.after
            )
        ]
        if ready:
            await self._submit(row, prefix, ready, current)
            return
        if any(TaskState(t.state) not in TERMINAL_TASK for t in current.values()):
            await self._refresh(row)
            return
        lost = [t for t in current.values() if TaskState(t.state) in LOST_TASK]
        if not lost:
            await self._move(row, G.VERIFYING, "every task finished; checking the result")
            return
        named = f"task {lost[0].task_id} ({lost[0].title!r}) ended {lost[0].state}"
        if row.replans < self.replans:
            done = [t.title for t in current.values() if TaskState(t.state) in FINISHED_TASK]
            note = f"An earlier plan was tried: {named}." + (
                f" These tasks of it are done: {'; '.join(done)}." if done else ""
            )
            await self._move(
                row,
                G.PLANNING,
                f"{named}: planning what is left",
                attempt=row.attempt + 1,
                plan=None,
                verify_round=0,
                replans=row.replans + 1,
                feedback=[*row.feedback, note[:2000]],
            )
        else:
            await self._move(row, G.FAILED, f"{named}, after {row.replans} re-plans")

    async def _refresh(self, row: Row[Any], *, now: bool = False) -> None:
        """Take the tasks' states from the queue, at most once a sweep unless `now`: the
        sweep behind the task events (which update `goal_tasks` as they come)."""
        loop = asyncio.get_running_loop()
        if not now and loop.time() - self._refreshed.get(row.id, -1e9) < self.sweep.total_seconds():
            return
        self._refreshed[row.id] = loop.time()
        found = {t.id: t for t in await self.queue.tasks_of(row.id)}
        async with self.engine.begin() as conn:
            for task_id, task in found.items():
                await conn.execute(
                    update(goal_tasks)
                    .where(goal_tasks.c.task_id == task_id)
                    .where(goal_tasks.c.state != task.state.value)
                    .values(
                        state=task.state.value,
                        result=task.result,
                        seen_at=task.updated_at,
                        updated_at=func.now(),
                    )
                )
        if any(t.state in TERMINAL_TASK for t in found.values()):
            self._progressed.add(row.id)

    async def _items(self, row: Row[Any]) -> list["Item"]:
        """What this round submits: the plan's tasks, or one follow-up per gap."""
        if row.verify_round == 0:
            return planned_tasks(Plan.model_validate(row.plan), row)
        return await self._follow_ups(row)

    async def _submit(
        self,
        row: Row[Any],
        prefix: str,
        ready: list[tuple[int, "Item"]],
        current: Mapping[str, Row[Any]],
    ) -> None:
        """Submit the items whose dependencies have all finished, each branched from its
        dependencies' work (`base_branch`). A dependent is submitted only once its dependency
        finished because only then is the branch it pushed known; its `depends_on` still names
        the dependency, so the DAG stays in the queue's records."""
        kind = "plan" if row.verify_round == 0 else "follow_up"
        results: dict[str, dict[str, Any] | None] = {}
        if any(item.after or item.start_from for _, item in ready):
            results = {t.id: t.result for t in await self.queue.tasks_of(row.id)}
        batch: list[SubmitTask] = []
        for index, item in ready:
            deps = [current[f"{prefix}{d}"].task_id for d in item.after]
            base, others = base_branch([results.get(d) for d in deps or item.start_from])
            description = item.task.description
            if others:
                description = (
                    description + "\n\nThis task starts from the work of its first dependency; "
                    "merge the work of the others first: " + ", ".join(others)
                )[:10_000]
            batch.append(
                item.task.model_copy(
                    update={
                        "client_key": f"{prefix}{index}",
                        "depends_on": deps,
                        "branch": base or item.task.branch,
                        "description": description,
                    }
                )
            )
        made = await self.queue.submit(SubmitTasks(tasks=batch))
        async with self.engine.begin() as conn:
            await store.add_tasks(
                conn,
                row.id,
                row.attempt,
                kind,
                [
                    (task_id, f"{prefix}{n}", item.title, TaskState.QUEUED.value)
                    for (n, item), task_id in zip(ready, made, strict=True)
                ],
            )
        log.info("goal.submitted", extra={"goal_id": row.id, "tasks": len(ready), "kind": kind})
        self._progressed.add(row.id)
        await self._refresh(row, now=True)  # waiting vs queued, and any that already moved

    async def _follow_ups(self, row: Row[Any]) -> list["Item"]:
        """One task per gap of the last verdict. Each starts from the previous round's work
        (the plan's last tasks, or the previous follow-ups) and carries the plan's checks:
        it must close its gap without breaking what the plan's tasks made."""
        async with self.engine.connect() as conn:
            last = (
                await conn.execute(
                    select(verifications.c.report)
                    .where(verifications.c.goal_id == row.id)
                    .order_by(verifications.c.round.desc())
                    .limit(1)
                )
            ).scalar_one()
            previous = f"{row.id}:{row.attempt}:{row.verify_round - 1}:"
            before = {
                int(t.key.removeprefix(previous)): t.task_id
                for t in (
                    await conn.execute(
                        select(goal_tasks.c.key, goal_tasks.c.task_id).where(
                            goal_tasks.c.key.startswith(previous, autoescape=True)
                        )
                    )
                ).all()
            }
        plan = Plan.model_validate(row.plan)
        if row.verify_round == 1:  # after the plan: its tasks no other task depends on
            needed = {d for after in plans.dependencies(plan) for d in after}
            before = {n: t for n, t in before.items() if n not in needed}
        start_from = [before[n] for n in sorted(before)]
        checks = list(dict.fromkeys(c for task in plan.tasks for c in task.verification))
        lane = Lane(row.priority)
        items: list[Item] = []
        for gap in last["gaps"]:
            criterion = row.success_criteria[gap["criterion"] - 1]
            task = SubmitTask(
                description=f"{gap['gap']}\n\nThis is a follow-up for the goal "
                f"{row.title!r}: its criterion {criterion!r} is not met yet.",
                priority=higher(lane) if gap.get("critical") else lane,
                repo=row.repo,
                success_criteria=[criterion[:500]],
                verification_steps=[
                    CommandSucceeds(type="command_succeeds", command=c) for c in checks[:20]
                ],
                goal_id=row.id,
            )
            items.append(Item(task, f"follow-up: {gap['gap'][:150]}", [], start_from))
        return items

    async def _verify(self, row: Row[Any]) -> None:
        tasks = await self.queue.tasks_of(row.id)
        mine = {t.task_id for t in await self._tasks_of(row)}
        shown = [
            verify.TaskOutcome(t.description.split("\n", 1)[0][:200], t.state.value, t.result)
            for t in tasks
            if t.id in mine
        ]
        outcome = await verify.judge(
            self.chat, row.id, row.title, row.description, row.success_criteria, shown
        )
        costs = {
            "cost_tokens": row.cost_tokens + outcome.tokens,
            "cost_usd": row.cost_usd + outcome.cost_usd,
        }
        round_ = row.verify_round + 1  # follow-up rounds of this attempt
        if isinstance(outcome, verify.JudgeRefused):
            report: dict[str, Any] = {"errors": list(outcome.errors), "gaps": []}
            to, reason = G.NEEDS_REVIEW, "the judge's answers could not be read"
            extra: dict[str, Any] = {}
        else:
            gaps = [g.model_dump() for g in outcome.gaps]
            report = {"summary": outcome.judgement.summary, "gaps": gaps} | {
                "criteria": [c.model_dump() for c in outcome.judgement.criteria]
            }
            if outcome.passed:
                to, reason, extra = G.COMPLETE, "every success criterion is met", {}
            elif row.verify_round < self.verify_retries:
                to = G.EXECUTING
                reason = f"{len(gaps)} criteria not met: follow-up tasks (round {round_})"
                extra = {"verify_round": round_}
            else:
                to = G.NEEDS_REVIEW
                reason = f"{len(gaps)} criteria still not met after {row.verify_round} follow-ups"
                extra = {}
        async with self.engine.begin() as conn:
            await store.add_verification(conn, row.id, to is G.COMPLETE, report)
            await transitions.move(
                conn,
                store.MACHINE,
                row.id,
                to,
                reason=reason,
                actor=ACTOR,
                values={"reason": reason, "failures": 0, **costs, **extra},
                sources=frozenset({G.VERIFYING}),
            )
        self._progressed.add(row.id)

    async def _tasks_of(self, row: Row[Any]) -> list[Row[Any]]:
        async with self.engine.connect() as conn:
            return list(
                (
                    await conn.execute(
                        select(goal_tasks)
                        .where(goal_tasks.c.goal_id == row.id)
                        .where(goal_tasks.c.attempt == row.attempt)
                    )
                ).all()
            )

    async def _cancel_tasks(self, row: Row[Any]) -> None:
        for task in await self._tasks_of_any_attempt(row.id):
            if TaskState(task.state) not in TERMINAL_TASK:
                await self.queue.cancel(task.task_id)
        await self._refresh(row, now=True)  # the states the queue ended them in

    async def _tasks_of_any_attempt(self, goal_id: str) -> list[Row[Any]]:
        async with self.engine.connect() as conn:
            return list(
                (
                    await conn.execute(select(goal_tasks).where(goal_tasks.c.goal_id == goal_id))
                ).all()
            )


async def _hub_executing(conn: AsyncConnection) -> bool:
    """The hub is executing and has announced it: its `hub.state_changed` has left the outbox.

    The gateway charges a hub call to the state the hub last announced, so a goal planned or
    judged before that would pay into another state's budget (a goal submitted to a resting
    hub was planned on `hub:resting`). A paused or healing hub takes no model step either;
    the goal waits, and the driver is woken when the hub's state is announced."""
    state = (
        await conn.execute(select(hub.c.state).where(hub.c.id == brain_store.HUB_ID))
    ).scalar_one_or_none()
    if state != HubState.EXECUTING.value:
        return False
    unsent = await conn.execute(
        select(func.count())
        .select_from(outbox_table)
        .where(outbox_table.c.subject == subjects.HUB_STATE_CHANGED)
    )
    return unsent.scalar_one() == 0


@dataclass(frozen=True, slots=True)
class Item:
    """One task to submit: the request (without key and dependencies), its title, the
    indexes of the items it waits for, and (a follow-up) the tasks whose work it starts from."""

    task: SubmitTask
    title: str
    after: list[int]
    start_from: list[str] = field(default_factory=list[str])


def brief(row: Row[Any]) -> GoalBrief:
    """The goal as the planner sees it; what earlier plans taught is added to its description."""
    notes = "".join(f"\n\nNote: {note}" for note in row.feedback)
    return GoalBrief(
        goal_id=row.id,
        title=row.title,
        description=row.description + notes,
        success_criteria=tuple(row.success_criteria),
        repo=row.repo,
        budget_tokens=row.budget_tokens,
        budget_usd=row.budget_usd,
    )


def work_branch(result: Mapping[str, Any] | None) -> str | None:
    """Where a finished task's work is: the branch it pushed, else (nothing to push) the base
    it started from; None when its result names neither (a task run without a repo)."""
    if not result:
        return None
    if result.get("pushed") and result.get("branch"):
        return str(result["branch"])
    base = result.get("base")
    return str(base) if base else None


def base_branch(results: list[Mapping[str, Any] | None]) -> tuple[str | None, list[str]]:
    """The branch a dependent task starts from, and the other dependencies' branches it must
    merge. One dependency: its work branch. Several: the first one's (plan order), and the
    rest are named for the agent to merge (the hub has no writable clone to merge them in)."""
    branches = list(dict.fromkeys(b for r in results if (b := work_branch(r))))
    if not branches:
        return None, []
    return branches[0], branches[1:]


def higher(lane: Lane) -> Lane:
    order = list(LANE_ORDER)
    return order[max(0, LANE_ORDER[lane] - 1)]


def planned_tasks(plan: Plan, row: Row[Any]) -> list[Item]:
    deps = plans.dependencies(plan)
    items: list[Item] = []
    for task, after in zip(plan.tasks, deps, strict=True):
        body = task.description
        if task.files or task.new_files:
            body += "\n\nFiles: " + ", ".join(
                [*task.files, *(f"{f} (new)" for f in task.new_files)]
            )
        items.append(
            Item(
                SubmitTask(
                    description=f"{task.title}\n\n{body}"[:10_000],
                    priority=Lane(row.priority),
                    repo=row.repo,
                    success_criteria=[c[:500] for c in task.success_criteria],
                    verification_steps=[
                        CommandSucceeds(type="command_succeeds", command=c)
                        for c in task.verification
                    ],
                    complexity_tier=task.tier,
                    goal_id=row.id,
                    # the sidecar caps what the change's pull request gets by it
                    metadata={"goal_title": row.title[:200], "autonomy": row.autonomy},
                ),
                task.title,
                after,
            )
        )
    return items
