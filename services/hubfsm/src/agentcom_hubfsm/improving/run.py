"""An improving cycle: the entry work of `improving`, started by the brain once per stay.

The hub never runs repo code: it submits one scan task per repo (`hub_improving_repos`, else
contemplation's, else the goals' repos) to the queue, for an agent whose config lists the
`scan` executor (`metadata.executor = "scan"`, needing `hub_improving_capability`), and waits
for them (at most `hub_improving_scan_timeout`; a scan that failed or did not end is named in
the report). The findings of the results are filtered (`choose`), every one is stored with
why it was kept or dropped, and the kept ones become low-priority goals (source
`self_improvement`, linked to their finding), in one transaction that also ends the cycle.

With goals made, the brain's rules take the hub to executing. With none, the cycle moves the
hub on itself: to resting, unless a contemplation cycle is due, when the brain takes it to
contemplating (`improving_left` is 0 once the cycle ended). A cycle cancelled by a `stop` is
`interrupted`; one resumed after a restart finds its row and its tasks by the stay (their
`client_key`s make a second submit return the same tasks).
"""

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import subjects
from agentcom_common.contracts.hub import HubState, SubmitGoal
from agentcom_common.contracts.scan import (
    CycleSummary,
    RepoReview,
    RepoScan,
    ScanFinding,
    ScanResult,
)
from agentcom_common.contracts.task import Lane, SubmitTask, SubmitTasks, TaskState, TaskView
from agentcom_common.errors import AgentcomError
from agentcom_hubfsm.brain import store as brain_store
from agentcom_hubfsm.contemplation import store as contemplation_store
from agentcom_hubfsm.goals import store as goal_store
from agentcom_hubfsm.improving import choose, review, store
from agentcom_hubfsm.queueclient import QueueClient
from agentcom_hubfsm.settings import HubSettings
from agentcom_hubfsm.tables import goals, hub, outbox_table

log = logging.getLogger(__name__)
ENDED = frozenset(
    {TaskState.COMPLETED, TaskState.PARTIAL_PASS, TaskState.FAILED, TaskState.DEAD_LETTER}
) | {TaskState.CANCELLED}


def group(cycle: int) -> str:
    """The queue's `goal_id` of a cycle's scan tasks: how the cycle reads them back."""
    return f"improving-{cycle}"


def findings_of(task: TaskView) -> tuple[list[ScanFinding], str | None]:
    """A scan task's findings, or why it has none (it did not complete, its result is not a
    scan result). A fingerprint is recomputed: the agent's is not trusted."""
    if task.state is not TaskState.COMPLETED:
        return [], f"its scan ended {task.state.value}: {task.last_error or 'no error given'}"
    details: object = (task.result or {}).get("details")
    scan = cast(dict[str, object], details).get("scan") if isinstance(details, dict) else None
    try:
        result = ScanResult.model_validate(scan)
    except ValidationError as exc:
        return [], f"its scan result is unreadable: {exc.errors()[0]['msg']}"
    return [
        f.model_copy(update={"fingerprint": f.expected_fingerprint()}) for f in result.findings
    ], None


@dataclass(slots=True)
class Scanned:
    """What a cycle's scans gave: the findings by repo, each repo's scan, and what went wrong."""

    found: list[tuple[str, ScanFinding]] = field(default_factory=list[tuple[str, ScanFinding]])
    repos: list[RepoScan] = field(default_factory=list[RepoScan])
    notes: list[str] = field(default_factory=list[str])
    reviewed: review.Reviewed = field(default_factory=review.Reviewed)


@dataclass(frozen=True, slots=True)
class Improver:
    engine: AsyncEngine
    queue: QueueClient
    settings: HubSettings
    wake: asyncio.Event  # the brain's: the cycle's end lets its rules run again
    goal_wake: asyncio.Event  # the goal driver's: new goals to plan
    actor: str = "improving"
    reviewer: review.Reviewer | None = None  # `hub_improving_review`

    async def run(self) -> None:
        async with self.engine.connect() as conn:
            row = await brain_store.load(conn)
        if row.state != HubState.IMPROVING:
            return
        entered = row.entered_at
        async with self.engine.begin() as conn:
            cycle = await store.start_cycle(conn, entered)
        if cycle.ended_at is not None:  # resumed after it ended: only the move is left
            await self._end(entered, cycle.id, Scanned(), "", resumed=True)
            return
        try:
            repos = await self._repos()
            if not repos:
                why = "no repo to scan: set hub_improving_repos or give the hub a goal"
                await self._end(entered, cycle.id, Scanned(notes=[why]), "nothing")
                return
            tasks = await self._submit(cycle.id, repos, dict(cycle.tasks))
            # the hub's own part while the agents scan: the model's review of the recent diff
            reviewed = await self._review(repos)
            scanned = await self._wait(cycle.id, tasks)
            scanned.reviewed = reviewed
        except asyncio.CancelledError:
            await asyncio.shield(self._interrupted(entered, cycle.id))
            raise
        except AgentcomError as exc:  # the queue could not be asked: the cycle failed
            failed = Scanned(notes=[f"{exc.code}: {exc.detail}"])
            await self._end(entered, cycle.id, failed, "failed")
            return
        await self._end(entered, cycle.id, scanned, "")

    async def _review(self, repos: list[str]) -> review.Reviewed:
        """The model's review of each repo's recent diff, once the gateway can know whom to
        charge: the hub's `state_changed` to improving has left the outbox (the gateway charges
        the state the hub last announced), as the goal driver waits for executing's."""
        if self.reviewer is None:
            return review.Reviewed()
        poll = self.settings.hub_goal_sweep.total_seconds()
        try:
            async with asyncio.timeout(self.settings.hub_improving_scan_timeout.total_seconds()):
                while True:
                    if await self._announced():
                        break
                    await asyncio.sleep(poll)  # the outbox is asked again: a poll, not a guess
        except TimeoutError:
            why = "the hub's move to improving was never announced (NATS away?)"
            return review.Reviewed(
                reviews=[RepoReview(repo=r, state="failed", note=why) for r in repos]
            )
        return await self.reviewer.all(repos)

    async def _announced(self) -> bool:
        async with self.engine.connect() as conn:
            state = (
                await conn.execute(select(hub.c.state).where(hub.c.id == brain_store.HUB_ID))
            ).scalar_one_or_none()
            unsent = await conn.execute(
                select(func.count())
                .select_from(outbox_table)
                .where(outbox_table.c.subject == subjects.HUB_STATE_CHANGED)
            )
            return state == HubState.IMPROVING.value and unsent.scalar_one() == 0

    async def _repos(self) -> list[str]:
        s = self.settings
        repos = list(s.hub_improving_repos or s.hub_contemplation_repos)
        if not repos:
            async with self.engine.connect() as conn:
                rows = await conn.execute(
                    select(goals.c.repo)
                    .group_by(goals.c.repo)
                    .order_by(func.max(goals.c.created_at).desc())
                    .limit(50)
                )
                repos = [str(r) for (r,) in rows]
        return list(dict.fromkeys(repos))

    async def _submit(self, cycle: int, repos: list[str], known: dict[str, str]) -> dict[str, str]:
        """repo -> scan task id; a resumed cycle submits again with the same keys."""
        need = (
            [self.settings.hub_improving_capability]
            if self.settings.hub_improving_capability
            else []
        )
        batch = [
            SubmitTask(
                description=f"Improvement scan of {repo}\n\nRun the scanners; change nothing.",
                priority=Lane.LOW,
                metadata={"executor": "scan", "kind": "improvement_scan"},
                max_retries=1,
                needed_capabilities=need,
                repo=repo,
                goal_id=group(cycle),
                client_key=f"improving:{cycle}:{n}",
            )
            for n, repo in enumerate(repos)
        ]
        ids = await self.queue.submit(SubmitTasks(tasks=batch))
        tasks = known | dict(zip(repos, ids, strict=True))
        async with self.engine.begin() as conn:
            await store.set_tasks(conn, cycle, tasks)
        log.info("improving.submitted", extra={"cycle": cycle, "scans": len(tasks)})
        return tasks

    async def _wait(self, cycle: int, tasks: dict[str, str]) -> "Scanned":
        poll = self.settings.hub_goal_sweep.total_seconds()
        by_id = {v: k for k, v in tasks.items()}
        seen: dict[str, TaskView] = {}
        try:
            async with asyncio.timeout(self.settings.hub_improving_scan_timeout.total_seconds()):
                while True:
                    seen = {
                        t.id: t for t in await self.queue.tasks_of(group(cycle)) if t.id in by_id
                    }
                    if len(seen) == len(by_id) and all(t.state in ENDED for t in seen.values()):
                        break
                    await asyncio.sleep(poll)  # the queue is asked again: a poll, not a guess
        except TimeoutError:
            pass
        scanned = Scanned()
        for task_id, repo in by_id.items():
            task = seen.get(task_id)
            if task is None or task.state not in ENDED:
                timeout = self.settings.hub_improving_scan_timeout
                why = f"its scan did not end within {timeout}; cancelled"
                scanned.notes.append(f"{repo}: {why}")
                scanned.repos.append(
                    RepoScan(repo=repo, task_id=task_id, state="timed_out", note=why)
                )
                await self.queue.cancel(task_id)  # a late scan would be read by no one
                continue
            these, why = findings_of(task)
            scanned.found += [(repo, f) for f in these]
            scanned.repos.append(
                RepoScan(
                    repo=repo,
                    task_id=task_id,
                    state=task.state.value,
                    findings=len(these),
                    note=why,
                )
            )
            if why is not None:
                scanned.notes.append(f"{repo}: {why}")
        return scanned

    async def _interrupted(self, entered: datetime, cycle: int) -> None:
        async with self.engine.begin() as conn:
            row = await brain_store.load(conn, lock=True)
            if row.state == HubState.IMPROVING and row.entered_at == entered:
                return  # no longer leading: the stay goes on, the next brain resumes it
            await store.end_cycle(conn, cycle, "interrupted", "stopped before it finished")

    def _policy(self) -> choose.Policy:
        s = self.settings
        return choose.Policy(
            s.hub_improving_max_goals,
            s.hub_improving_fingerprint_cooldown,
            s.hub_improving_file_cooldown,
            s.hub_improving_oscillation_window,
        )

    async def _end(
        self,
        entered: datetime,
        cycle: int,
        scanned: "Scanned",
        outcome: str,
        *,
        resumed: bool = False,
    ) -> None:
        """Store every finding and the goals of the kept ones, end the cycle with its report
        and, with no goal made and no contemplation due, move the hub to resting: one
        transaction. `resumed`: the cycle had ended already; only the move is left."""
        made: list[str] = []
        async with self.engine.begin() as conn:
            row = await brain_store.load(conn, lock=True)
            if not resumed:
                found = scanned.found + scanned.reviewed.found
                notes = scanned.notes + [
                    f"{r.repo}: review {r.state}: {r.note}"
                    for r in scanned.reviewed.reviews
                    if r.state != "reviewed" and r.note
                ]
                history = await store.history(conn, sorted({r for r, _ in found}))
                now = (await conn.execute(select(func.now()))).scalar_one()
                decisions = choose.choose(found, history, now, self._policy())
                dropped: dict[str, int] = {}
                for decision in decisions:
                    if (goal_id := await self._keep(conn, cycle, decision)) is not None:
                        made.append(goal_id)
                    else:
                        dropped[decision.kind] = dropped.get(decision.kind, 0) + 1
                report = f"{len(decisions)} findings, {len(made)} kept" + "".join(
                    f"; {m}" for m in notes
                )
                summary = CycleSummary(
                    repos=scanned.repos,
                    reviews=scanned.reviewed.reviews,
                    found=len(decisions),
                    kept=len(made),
                    dropped=dict(sorted(dropped.items())),
                    goals=made,
                    budget=scanned.reviewed.spent.budget(),  # scans call no model; reviews do
                    notes=notes,
                )
                await store.end_cycle(
                    conn, cycle, outcome or ("kept" if made else "nothing"), report, summary
                )
            here = row.state == HubState.IMPROVING and row.entered_at == entered
            pace = contemplation_store.Pace.of(self.settings)
            if here and not made and not await contemplation_store.due(conn, pace):
                await brain_store.move(
                    conn,
                    row,
                    HubState.RESTING,
                    reason="improving: nothing left to improve",
                    actor=self.actor,
                    watchdog=self.settings.hub_global_watchdog,
                )
        log.info("improving.ended", extra={"cycle": cycle, "goals": len(made)})
        if made:
            self.goal_wake.set()
        self.wake.set()

    async def _keep(self, conn: Any, cycle: int, decision: choose.Decision) -> str | None:
        """Store the finding; a kept one becomes a goal, whose id is returned."""
        finding_id = store.new_id()
        goal_id: str | None = None
        if decision.kept:
            f = decision.finding
            goal, _ = await goal_store.create(
                conn,
                SubmitGoal(
                    title=f.title,
                    description="\n".join(
                        (
                            f"An improvement scan found this ({f.category}, {f.severity}).",
                            f"Files: {', '.join(f.files)}",
                            "Evidence:",
                            *(f"- {e}" for e in f.evidence),
                        )
                    )[:20_000],
                    success_criteria=[f"a new scan no longer reports: {f.title}"[:500]],
                    repo=decision.repo,
                    priority=Lane.LOW,
                    client_key=f"finding:{finding_id}",
                    source="self_improvement",
                    link=f"/api/hub/findings/{finding_id}",
                ),
                self.actor,
            )
            goal_id = goal.id
        await store.add(conn, cycle, decision, goal_id, finding_id)
        return goal_id
