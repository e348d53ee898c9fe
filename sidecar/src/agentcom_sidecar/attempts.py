"""Build -> verify -> fix: run the executor, check its work, feed failed checks back.

Up to `1 + max_verification_retries` attempts. Outcomes, honestly:
- `completed`: every check passed; or the task had no steps, and the result says
  `verification: not_verified` (a task with no steps is never counted as verified);
- `partial_pass`: the last attempt still fails some checks but others pass (the result lists
  what passed and what remains);
- `failed`: the executor itself failed (error, deadline), or no check ever passed.
Duration, tokens and cost add up over the attempts.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from agentcom_common.contracts.delivery import DeliveryReport
from agentcom_common.contracts.task import TaskView, VerificationStep
from agentcom_sidecar import namespaces, verification
from agentcom_sidecar.executors.base import (
    ExecutionContext,
    ExecutionResult,
    Executor,
    ReportSink,
)

OutcomeKind = Literal["completed", "partial_pass", "failed"]


@dataclass(slots=True)
class Outcome:
    kind: OutcomeKind
    result: dict[str, Any] = field(default_factory=dict[str, Any])
    error: str | None = None
    delivery: DeliveryReport | None = None
    """Set by delivery: the diff's stats, the pre-publication findings and the risk tier."""


@dataclass(frozen=True, slots=True)
class Plan:
    task: TaskView
    agent_id: str
    generation: int
    workspace: Path
    steps: list[VerificationStep]
    max_retries: int
    deadline: float
    """`asyncio.get_running_loop().time()` by which every attempt, check included, has stopped:
    one deadline for the whole assignment, not one per attempt."""
    env: Mapping[str, str]
    feedback_file: Path
    emit: ReportSink | None = None
    """Journals an executor's progress and tool_call reports."""
    confine: namespaces.Confinement | None = None
    """How the verification commands are contained, like the task's shell command."""


async def run(
    plan: Plan, executor: Executor, on_stage: Callable[[str], Awaitable[None]] | None = None
) -> Outcome:
    started = time.monotonic()
    totals = {"tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0}
    history: list[dict[str, Any]] = []
    feedback: str | None = None
    report = verification.Report("not_verified", ())
    result: ExecutionResult | None = None
    late: str | None = None
    for attempt in range(1, plan.max_retries + 2):
        if attempt > 1 and _left(plan) <= 0:  # no time for a corrective attempt: say so
            late = f"the deadline passed before attempt {attempt}"
            break
        if on_stage is not None:
            await on_stage(f"attempt {attempt}: executing")
        result = await executor.run(_context(plan, attempt, feedback))
        totals["tokens_in"] += result.tokens_in
        totals["tokens_out"] += result.tokens_out
        totals["cost_usd"] += result.cost_usd
        if not result.ok:
            return await _stopped(plan, attempt, result, history, totals, started)
        if on_stage is not None:
            await on_stage(f"attempt {attempt}: verifying")
        report = await verification.run_checks(
            plan.steps, plan.workspace, plan.env, plan.deadline, plan.confine
        )
        history.append({"attempt": attempt, "verification": report.status, "passed": report.passed})
        if report.status != "fail":
            break
        feedback = report.feedback()
    assert result is not None
    body = _result(result, report, history, totals, started)
    if report.status != "fail":
        return Outcome("completed", body)
    remaining = [f"{c.check} {c.target}".strip() for c in report.failed]
    note = f"verification failed after {len(history)} attempt(s): {', '.join(remaining)}"
    if late:
        note += f"; {late}"
        body["deadline_passed"] = True
    return Outcome("partial_pass" if report.passed else "failed", body, note)


async def _stopped(
    plan: Plan,
    attempt: int,
    result: ExecutionResult,
    history: list[dict[str, Any]],
    totals: dict[str, Any],
    started: float,
) -> Outcome:
    """The executor did not finish. An agent loop stopped by a limit (`details.partial`) keeps
    its work: checked, it is `partial_pass` if the checks pass or it changed files; else failed.
    Either way the result says what was done and what remains (`done`, `remaining`)."""
    history.append({"attempt": attempt, "executor": result.stop_reason})
    error = f"attempt {attempt}: {result.summary} ({result.stop_reason})"
    report = verification.Report("not_verified", ())
    partial = bool(result.details.get("partial"))
    if partial:
        report = await verification.run_checks(
            plan.steps, plan.workspace, plan.env, plan.deadline, plan.confine
        )
        history[-1]["verification"] = report.status
    body = _result(result, report, history, totals, started)
    body["stop_reason"] = result.stop_reason
    body["done"] = _strings(result.details.get("done"))
    body["remaining"] = body.get("remaining", []) + _strings(result.details.get("remaining"))
    if partial and (report.status == "pass" or result.details.get("files_changed")):
        return Outcome("partial_pass", body, error)
    return Outcome("failed", body, error)


def _strings(value: object) -> list[str]:
    return [str(v) for v in cast("list[object]", value)] if isinstance(value, list) else []


def _context(plan: Plan, attempt: int, feedback: str | None) -> ExecutionContext:
    env = dict(plan.env) | {"AGENTCOM_ATTEMPT": str(attempt)}
    if feedback is not None:
        plan.feedback_file.write_text(feedback)
        env["AGENTCOM_FEEDBACK_FILE"] = str(plan.feedback_file)
    return ExecutionContext(
        task=plan.task,
        agent_id=plan.agent_id,
        generation=plan.generation,
        workspace=plan.workspace,
        deadline=plan.deadline,
        attempt=attempt,
        feedback=feedback,
        env=env,
        emit=plan.emit,
    )


def _left(plan: Plan) -> float:
    return plan.deadline - asyncio.get_running_loop().time()


def _result(
    last: ExecutionResult,
    report: verification.Report,
    history: list[dict[str, Any]],
    totals: dict[str, Any],
    started: float,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "summary": last.summary,
        "exit_code": last.exit_code,
        "output_tail": last.output_tail[-2000:],
        "attempts": len(history),
        "verification": report.as_dict(),
        "verification_history": history,
        "verified": report.status == "pass",
        "duration_ms": round((time.monotonic() - started) * 1000, 1),
        **totals,
    }
    if last.details:  # the executor's own account (the agent loop's turns, model, files)
        body["details"] = dict(last.details)
    if report.status == "not_verified":
        body["verification_note"] = "the task has no verification steps: not verified"
    if report.failed:
        body["remaining"] = [f"{c.check} {c.target}".strip() for c in report.failed]
        body["passed"] = report.passed
    return body
