"""A healing run: the entry work of `healing`, started by the brain once per stay.

It assesses afresh, then for each issue (in `remedies.ORDER`) plans each action's steps and
applies them one by one: a step whose action already acted on its target within
`hub_healing_window` is skipped (the rate limit), a dry run records what it would do, any other
step runs and is recorded with its result. The run then ends (outcome and report in its row),
and the hub moves to resting in the same transaction. A run cancelled by a `stop` is recorded
as `interrupted`; one that hangs is ended by the brain's healing watchdog (`brain.loop`).

Started again after a restart or takeover, a run finds its row (by the stay) and goes on: the
steps that were done are skipped by the rate limit, so nothing is done twice. (A brain that
stops leading cancels the run without ending it, for that reason.)
"""

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import clock
from agentcom_common.contracts.health import (
    HealingAction,
    HealthIssue,
    Outcome,
    RunOutcome,
)
from agentcom_common.contracts.hub import HubState
from agentcom_common.errors import AgentcomError
from agentcom_hubfsm.brain import store as brain_store
from agentcom_hubfsm.healing import remedies, store
from agentcom_hubfsm.health import monitor
from agentcom_hubfsm.settings import HubSettings

log = logging.getLogger(__name__)
RANK: Mapping[Outcome, int] = {"done": 0, "would_do": 1, "skipped": 2, "failed": 3}


@dataclass(frozen=True, slots=True)
class Healer:
    engine: AsyncEngine
    nc: Client
    settings: HubSettings
    wake: asyncio.Event  # the brain's: the move to resting lets its rules run again
    actor: str = "healing"

    @property
    def ctx(self) -> remedies.Context:
        s = self.settings
        return remedies.Context(
            nc=self.nc,
            timeout=s.hub_health_timeout.total_seconds(),
            backoff=s.hub_healing_reprobe_backoff,
            fallback_for=s.hub_healing_fallback_for,
        )

    async def run(self) -> None:
        async with self.engine.connect() as conn:
            row = await brain_store.load(conn)
        if row.state != HubState.HEALING:
            return
        entered = row.entered_at
        dry = self.settings.hub_healing_dry_run
        issues = await monitor.assess(self.engine, self.nc, self.settings)
        async with self.engine.begin() as conn:
            run_id, _ = await store.start_run(conn, entered, issues, dry)
        log.info("healing.started", extra={"run_id": run_id, "issues": [i.key for i in issues]})
        try:
            by_issue = await self._heal(run_id, issues, dry)
        except asyncio.CancelledError:
            # shield: the cancel that stops the run would otherwise abort the record of it
            await asyncio.shield(self._interrupted(entered))
            raise
        # unresolved: an issue whose steps failed with none done (a failed re-probe followed
        # by a done fallback is handled; so is one task of three that could not be requeued)
        failed = any("failed" in outs and "done" not in outs for outs in by_issue)
        outcome: RunOutcome = "dry_run" if dry else "unresolved" if failed else "healed"
        outcomes: list[Outcome] = [o for outs in by_issue for o in outs]
        await self._end(entered, outcome, _report(issues, outcomes, outcome))

    async def _heal(self, run_id: int, issues: list[HealthIssue], dry: bool) -> list[list[Outcome]]:
        by_issue: list[list[Outcome]] = []
        for issue in sorted(issues, key=lambda i: remedies.ORDER.index(i.category)):
            steps: list[Outcome] = []
            by_issue.append(steps)
            before: dict[str, Outcome] = {}
            for remedy in remedies.REMEDIES[issue.category]:
                for step in remedy.plan(self.ctx, issue, before):
                    got = await self._apply(run_id, issue, remedy.name, step, dry)
                    worst = before.get(remedy.name, "done")
                    before[remedy.name] = max(got, worst, key=RANK.__getitem__)
                    steps.append(got)
        return by_issue

    async def _apply(
        self, run_id: int, issue: HealthIssue, action: str, step: remedies.Step, dry: bool
    ) -> Outcome:
        window = self.settings.hub_healing_window
        async with self.engine.connect() as conn:
            last = await store.acted_at(conn, action, step.target, window)
        outcome: Outcome
        if step.do is None:
            outcome, detail = "skipped", step.detail
        elif last is not None:
            outcome = "skipped"
            detail = f"{action} acted on {step.target} at {last.isoformat()}; once per {window}"
        elif dry:
            outcome, detail = "would_do", f"dry run: would {step.detail}"
        else:
            try:
                outcome, detail = "done", await step.do()
            except Exception as exc:  # noqa: BLE001 - any failure of a step is recorded as its result
                outcome, detail = "failed", f"{step.detail}: {_why(exc)}"
        action_row = HealingAction(
            run_id=run_id,
            category=issue.category,
            action=action,
            target=step.target,
            outcome=outcome,
            detail=detail[:4000],
            evidence=step.evidence,
            dry_run=dry,
            at=clock.now(),
        )
        async with self.engine.begin() as conn:
            await store.record(conn, action_row)
        log.info(
            "healing.acted",
            extra={"action": action, "target": step.target, "outcome": outcome},
        )
        return outcome

    async def _interrupted(self, entered: datetime) -> None:
        """Cancelled: by a `stop` (the hub left the stay: the run ends `interrupted`), or because
        this replica no longer leads (the stay goes on: the next brain resumes the run)."""
        async with self.engine.begin() as conn:
            row = await brain_store.load(conn, lock=True)
            if row.state == HubState.HEALING and row.entered_at == entered:
                return
            await store.end_run(conn, entered, "interrupted", "stopped before it finished")

    async def _end(self, entered: datetime, outcome: RunOutcome, report: str) -> None:
        """End the run and, while the hub is still in this stay, move it to resting."""
        async with self.engine.begin() as conn:
            row = await brain_store.load(conn, lock=True)
            await store.end_run(conn, entered, outcome, report)
            if row.state == HubState.HEALING and row.entered_at == entered:
                await brain_store.move(
                    conn,
                    row,
                    HubState.RESTING,
                    reason=f"healing {outcome}: {report}"[:500],
                    actor=self.actor,
                    watchdog=self.settings.hub_global_watchdog,
                )
        log.info("healing.ended", extra={"outcome": outcome, "report": report})
        self.wake.set()


def _why(exc: Exception) -> str:
    if isinstance(exc, AgentcomError):
        return f"{exc.code}: {exc.detail}"
    return type(exc).__name__


def _report(issues: list[HealthIssue], outcomes: list[Outcome], outcome: RunOutcome) -> str:
    if not issues:
        return "nothing to heal: the issues were gone when the run began"
    counts = {o: outcomes.count(o) for o in RANK if outcomes.count(o)}
    done = ", ".join(f"{n} {o}" for o, n in counts.items()) or "no action"
    keys = ", ".join(i.key for i in issues)
    return f"{outcome}: {len(issues)} issue(s) ({keys}); actions: {done}"
