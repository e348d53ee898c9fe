"""Mechanical verification: `file_exists`, `test_passes`, `git_clean`, `command_succeeds`.

Every check runs in the task's workspace with its own timeout (commands in their own process
group, killed at the deadline), and every check runs (no fail-fast), so the report says what
passed and what remains. Commands are split with `shlex` into an argv list and run without a
shell. A task with no steps is reported as `not_verified`, never as a pass.
"""

import asyncio
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from agentcom_common.contracts.task import (
    CommandSucceeds,
    FileExists,
    GitClean,
    TestPasses,
    VerificationStep,
)
from agentcom_sidecar import processes

_STEPS: TypeAdapter[list[VerificationStep]] = TypeAdapter(list[VerificationStep])
TAIL_CHARS = 2000


@dataclass(frozen=True, slots=True)
class CheckResult:
    check: str
    target: str
    passed: bool
    duration_ms: float
    output_tail: str
    timed_out: bool = False


@dataclass(frozen=True, slots=True)
class Report:
    status: Literal["pass", "fail", "not_verified"]
    checks: tuple[CheckResult, ...]

    @property
    def passed(self) -> list[str]:
        return [f"{c.check} {c.target}".strip() for c in self.checks if c.passed]

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "checks": [asdict(c) for c in self.checks],
            "summary": {"total": len(self.checks), "passed": len(self.passed)},
        }

    def feedback(self) -> str:
        """The failed checks as text for a corrective attempt."""
        lines = ["These verification checks failed:"]
        for c in self.failed:
            why = "timed out" if c.timed_out else "failed"
            lines.append(f"- {c.check} {c.target}: {why}\n{c.output_tail[-500:]}")
        if self.passed:
            lines.append("Keep these passing: " + ", ".join(self.passed))
        return "\n".join(lines)


def parse_steps(task: Mapping[str, Any]) -> list[VerificationStep]:
    """The task's steps; raises ValueError naming the bad step."""
    try:
        return _STEPS.validate_python(task.get("verification_steps") or [])
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(
            f"verification_steps.{'.'.join(map(str, first['loc']))}: {first['msg']}"
        ) from None


def needs_commands(steps: Sequence[VerificationStep]) -> bool:
    return any(isinstance(s, TestPasses | CommandSucceeds) for s in steps)


async def _command(
    check: str, command: str, timeout: float, workspace: Path, env: Mapping[str, str]
) -> CheckResult:
    started = time.monotonic()
    try:
        argv = shlex.split(command)
        done = await processes.run(argv, workspace, timeout=timeout, env=env, grace=1.0)
    except (ValueError, FileNotFoundError, PermissionError) as exc:
        return CheckResult(check, command, False, _ms(started), f"cannot run: {exc}")
    passed = done.exit_code == 0
    return CheckResult(
        check, command, passed, _ms(started), done.tail[-TAIL_CHARS:], done.timed_out
    )


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


def _exists_inside(workspace: Path, relative: str) -> tuple[bool, bool]:
    root = workspace.resolve()
    target = (root / relative).resolve()  # symlinks resolved: a link out of the tree is outside
    inside = target == root or root in target.parents
    return inside and target.exists(), inside


async def _file_exists(step: FileExists, workspace: Path) -> CheckResult:
    started = time.monotonic()
    found, inside = await asyncio.to_thread(_exists_inside, workspace, step.path)
    note = "" if inside else "path leaves the workspace"
    return CheckResult(
        "file_exists", step.path, found, _ms(started), note or ("" if found else "missing")
    )


async def _git_clean(workspace: Path, env: Mapping[str, str]) -> CheckResult:
    started = time.monotonic()
    done = await processes.run(["git", "status", "--porcelain"], workspace, timeout=60, env=env)
    passed = done.exit_code == 0 and not done.tail.strip()
    return CheckResult("git_clean", "", passed, _ms(started), done.tail[-TAIL_CHARS:])


async def run_checks(
    steps: Sequence[VerificationStep],
    workspace: Path,
    env: Mapping[str, str],
    deadline: float | None = None,
) -> Report:
    """Run every step; a command step stops at its own timeout or at `deadline` (event-loop
    time, the assignment's), whichever comes first."""
    if not steps:
        return Report("not_verified", ())
    results: list[CheckResult] = []
    for step in steps:
        if isinstance(step, FileExists):
            results.append(await _file_exists(step, workspace))
        elif isinstance(step, GitClean):
            results.append(await _git_clean(workspace, env))
        else:
            timeout = step.timeout_s
            if deadline is not None:
                left = deadline - asyncio.get_running_loop().time()
                timeout = max(0.01, min(timeout, left))
            results.append(await _command(step.type, step.command, timeout, workspace, env))
    return Report("pass" if all(r.passed for r in results) else "fail", tuple(results))
