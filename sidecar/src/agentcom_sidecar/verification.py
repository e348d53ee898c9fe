"""Mechanical verification: `file_exists`, `test_passes`, `git_clean`, `command_succeeds`.

Every check runs in the task's workspace with its own timeout (commands in their own process
group, killed at the deadline), and every check runs (no fail-fast), so the report says what
passed and what remains. Commands are split with `shlex` into an argv list and run without a
shell. A task with no steps is reported as `not_verified`, never as a pass.

`git_clean` cannot mean "`git status` is empty": the checks run before the sidecar commits the
work (and the agent loop cannot commit: `.git` is read-only to it), so any task that changed a
file would fail it. It means "the checks left the work as the executor left it": the tree the
sidecar's commit will hold (every file that is not ignored, as `git add -A` stages it) is the
same after the other checks as before them. A test run that writes an artefact not covered by
`.gitignore`, or rewrites a tracked file, fails it and is named in the output. It is judged
after every other check, wherever it stands in the list.
"""

import asyncio
import shlex
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from agentcom_common.contracts.task import (
    CommandSucceeds,
    FileExists,
    GitClean,
    TestPasses,
    VerificationStep,
)
from agentcom_sidecar import meters, namespaces, processes, workspaces

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


def needs_commands(steps: Sequence[VerificationStep]) -> bool:
    return any(isinstance(s, TestPasses | CommandSucceeds) for s in steps)


async def _command(
    check: str,
    command: str,
    timeout: float,
    workspace: Path,
    env: Mapping[str, str],
    confine: namespaces.Confinement | None,
) -> CheckResult:
    started = time.monotonic()
    try:
        argv = shlex.split(command)
        done = await processes.run(
            argv, workspace, timeout=timeout, env=env, grace=1.0, confine=confine
        )
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


async def _git(args: list[str], workspace: Path, env: Mapping[str, str]) -> processes.Finished:
    return await processes.run(workspaces.argv(args), workspace, timeout=60, env=env)


async def committed_tree(workspace: Path, env: Mapping[str, str]) -> tuple[str | None, str]:
    """The tree id `git add -A` + commit would record now, or None and why not.

    Staged into a throwaway copy of the index, so the workspace's own index is never touched.
    The executor may have planted hooks or config in `.git`: guarded first, like every git
    call of the sidecar's own.
    """
    try:
        await workspaces.guard(workspace, env, 60)
    except (workspaces.GitError, OSError) as exc:
        return None, str(exc)
    gitdir = await _git(["rev-parse", "--absolute-git-dir"], workspace, env)
    if gitdir.exit_code != 0:
        return None, gitdir.tail[-TAIL_CHARS:]
    with tempfile.TemporaryDirectory(prefix="agentcom-index-") as scratch:
        index = Path(scratch) / "index"
        real = Path(gitdir.tail.strip().splitlines()[-1]) / "index"
        if real.is_file():  # its stat cache spares hashing every unchanged file again
            await asyncio.to_thread(shutil.copyfile, real, index)
        staged = dict(env) | {"GIT_INDEX_FILE": str(index)}
        added = await _git(["add", "-A"], workspace, staged)
        if added.exit_code != 0:
            return None, added.tail[-TAIL_CHARS:]
        tree = await _git(["write-tree"], workspace, staged)
        if tree.exit_code != 0 or not tree.tail.strip():
            return None, tree.tail[-TAIL_CHARS:]
        return tree.tail.strip().splitlines()[-1], ""


async def _git_clean(
    workspace: Path, env: Mapping[str, str], before: tuple[str | None, str]
) -> CheckResult:
    """Pass when the checks changed nothing the commit would hold (see the module doc)."""
    started = time.monotonic()
    tree, why = before
    if tree is None:
        return CheckResult("git_clean", "", False, _ms(started), f"not a git checkout: {why}")
    after, why = await committed_tree(workspace, env)
    if after is None:
        return CheckResult("git_clean", "", False, _ms(started), f"cannot stage: {why}")
    if after == tree:
        return CheckResult("git_clean", "", True, _ms(started), "")
    changed = await _git(["diff-tree", "-r", "--name-status", tree, after], workspace, env)
    note = "the checks changed files the commit would hold:\n" + changed.tail
    return CheckResult("git_clean", "", False, _ms(started), note[-TAIL_CHARS:])


async def run_checks(
    steps: Sequence[VerificationStep],
    workspace: Path,
    env: Mapping[str, str],
    deadline: float | None = None,
    confine: namespaces.Confinement | None = None,
) -> Report:
    """Run every step; a command step stops at its own timeout or at `deadline` (event-loop
    time, the assignment's), whichever comes first. Command steps are the task's own text:
    they run contained like its shell command (`confine`); the sidecar's git never is."""
    if not steps:
        meters.verdicts.add(1, {"verdict": "not_verified"})
        return Report("not_verified", ())
    # the work as the executor left it, before any check could add to it
    before = await committed_tree(workspace, env) if _has_git_clean(steps) else (None, "")
    results: dict[int, CheckResult] = {}
    for n, step in enumerate(steps):
        if isinstance(step, FileExists):
            results[n] = await _file_exists(step, workspace)
        elif isinstance(step, TestPasses | CommandSucceeds):
            timeout = step.timeout_s
            if deadline is not None:
                left = deadline - asyncio.get_running_loop().time()
                timeout = max(0.01, min(timeout, left))
            results[n] = await _command(step.type, step.command, timeout, workspace, env, confine)
    for n, step in enumerate(steps):  # last: it judges what the other checks left behind
        if isinstance(step, GitClean):
            results[n] = await _git_clean(workspace, env, before)
    ordered = tuple(results[n] for n in range(len(steps)))
    verdict = "pass" if all(r.passed for r in ordered) else "fail"
    for r in ordered:
        meters.checks.record(r.duration_ms / 1000, {"check": r.check, "passed": str(r.passed)})
    meters.verdicts.add(1, {"verdict": verdict})
    return Report(verdict, ordered)


def _has_git_clean(steps: Sequence[VerificationStep]) -> bool:
    return any(isinstance(s, GitClean) for s in steps)
