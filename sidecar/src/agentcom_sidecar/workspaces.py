"""Workspaces: one checkout per repo, a fresh branch per task, never work on the default branch.

`prepare` clones on first use and fetches after, throws away whatever the previous task left
(reset + clean, so switching repos and tasks is clean), and creates
`agentcom/<agent>/<task-id>-<slug>` from the up-to-date base (the task's `branch`, else the
remote's default branch). Every git call is an argv list with a timeout; a URL is an argument
after `--`, never shell text.
"""

import asyncio
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agentcom_sidecar import processes


class GitError(Exception):
    """A git step failed; the message says which and the tail of git's output."""


@dataclass(frozen=True, slots=True)
class Workspace:
    path: Path
    branch: str
    base: str


def slug(text: str, limit: int = 40) -> str:
    words = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return words[:limit].rstrip("-") or "task"


def branch_name(agent_id: str, task_id: str, description: str) -> str:
    return f"agentcom/{agent_id}/{task_id}-{slug(description)}"


def directory_for(root: Path, url: str) -> Path:
    """A readable, collision-free directory name for a repo URL."""
    readable = slug(re.sub(r"^[a-z+]+://|^[^@/]+@|\.git$", "", url), 60)
    return root / f"{readable}-{hashlib.sha256(url.encode()).hexdigest()[:8]}"


async def git(args: list[str], cwd: Path, env: Mapping[str, str], timeout: float, what: str) -> str:
    done = await processes.run(["git", *args], cwd, timeout=timeout, env=env, grace=1.0)
    if done.timed_out:
        raise GitError(f"{what}: git {args[0]} timed out after {timeout:g} s")
    if done.exit_code != 0:
        raise GitError(f"{what}: git {args[0]} exited {done.exit_code}: {done.tail[-800:]}")
    return done.tail


async def _default_branch(path: Path, env: Mapping[str, str], timeout: float) -> str:
    await git(
        ["remote", "set-head", "origin", "--auto"], path, env, timeout, "find the default branch"
    )
    ref = await git(
        ["symbolic-ref", "--short", "refs/remotes/origin/HEAD"],
        path,
        env,
        timeout,
        "find the default branch",
    )
    return ref.strip().removeprefix("origin/")


def _is_checkout(root: Path, path: Path) -> bool:
    root.mkdir(parents=True, exist_ok=True)
    return (path / ".git").is_dir()


async def prepare(
    root: Path,
    url: str,
    agent_id: str,
    task_id: str,
    description: str,
    base: str | None,
    env: Mapping[str, str],
    timeout: float,
) -> Workspace:
    """Clone or fetch `url`, then check out a fresh task branch from the up-to-date base."""
    path = directory_for(root, url)
    if not await asyncio.to_thread(_is_checkout, root, path):
        await git(
            ["clone", "--no-checkout", "--", url, str(path)], root, env, timeout, f"clone {url}"
        )
    else:
        await git(["fetch", "--prune", "origin"], path, env, timeout, f"fetch {url}")
    base = base or await _default_branch(path, env, timeout)
    branch = branch_name(agent_id, task_id, description)
    if branch in (base, "main", "master"):
        raise GitError(f"refusing to work on {branch}")
    await git(["reset", "--hard", "--quiet"], path, env, timeout, "clean the workspace")
    await git(["clean", "-fdxq"], path, env, timeout, "clean the workspace")
    await git(
        ["checkout", "--quiet", "-B", branch, f"origin/{base}"],
        path,
        env,
        timeout,
        f"branch from {base}",
    )
    await git(["clean", "-fdxq"], path, env, timeout, "clean the workspace")
    return Workspace(path, branch, base)
