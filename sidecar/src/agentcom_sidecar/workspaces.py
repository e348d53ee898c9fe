"""Workspaces: one checkout per repo, a fresh branch per task, never work on the default branch.

`prepare` clones on first use and fetches after, throws away whatever the previous task left
(reset + clean, so switching repos and tasks is clean), and creates
`agentcom/<agent>/<task-id>-<slug>` from the up-to-date base (the task's `branch`, else the
remote's default branch). Every git call is an argv list with a timeout; a URL is an argument
after `--`, never shell text.

A task's commands can write anything in the workspace, `.git` included (the agent loop only
without isolation), so nothing there decides what the sidecar's own git runs (`guard`): no
hook ever runs (`core.hooksPath=/dev/null` on every call, and the hooks are deleted), the repo's
config is rewritten to the few keys that describe its format before every use, so a planted
`core.fsmonitor`, `core.sshCommand`, `credential.helper`, `include.path`, alias, filter or
remote URL is gone, and the network calls name the configured URL themselves instead of reading
a remote from that config. A checkout whose `.git` is not a plain directory is cloned afresh.
The credentials (`auth`) reach only the clone, fetch, ls-remote and push that need them.
"""

import asyncio
import contextlib
import hashlib
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from agentcom_sidecar import processes

# On the command line these outrank every config file, and git hands them on to any git it
# starts (a nested repo's status) through GIT_CONFIG_PARAMETERS.
_NEVER_RUN: Final = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")
# what the repo's own config may keep: how its files and objects are stored, nothing that runs
_FORMAT_KEYS: Final = (
    "core.repositoryformatversion",
    "core.filemode",
    "core.logallrefupdates",
    "core.ignorecase",
    "core.precomposeunicode",
    "core.symlinks",
    "extensions.objectformat",
    "extensions.refstorage",
)
_FORMAT_VALUE: Final = re.compile(r"[A-Za-z0-9]{1,32}")
_REFSPEC: Final = "+refs/heads/*:refs/remotes/origin/*"


class GitError(Exception):
    """A git step failed; the message says which and the tail of git's output."""


@dataclass(frozen=True, slots=True)
class Workspace:
    path: Path
    branch: str
    base: str
    url: str
    """The configured URL: what the sidecar fetches from and pushes to, never a remote's."""
    continues: bool = False
    """Work goes on an existing task branch (a pull request's follow-up): new commits are
    those past `origin/<branch>`, and the push is a fast-forward, never forced."""


def slug(text: str, limit: int = 40) -> str:
    words = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return words[:limit].rstrip("-") or "task"


TASK_BRANCH: Final = re.compile(r"^agentcom/[A-Za-z0-9_-]{1,64}/[A-Za-z0-9._-]+$")


def branch_name(agent_id: str, task_id: str, description: str) -> str:
    return f"agentcom/{agent_id}/{task_id}-{slug(description)}"


def directory_for(root: Path, url: str) -> Path:
    """A readable, collision-free directory name for a repo URL."""
    readable = slug(re.sub(r"^[a-z+]+://|^[^@/]+@|\.git$", "", url), 60)
    return root / f"{readable}-{hashlib.sha256(url.encode()).hexdigest()[:8]}"


def argv(args: Sequence[str]) -> list[str]:
    """A git command line of the sidecar's own: no hook and no fsmonitor, whatever the config."""
    return ["git", *_NEVER_RUN, *args]


async def git(args: list[str], cwd: Path, env: Mapping[str, str], timeout: float, what: str) -> str:
    done = await processes.run(argv(args), cwd, timeout=timeout, env=env, grace=1.0)
    if done.timed_out:
        raise GitError(f"{what}: git {args[0]} timed out after {timeout:g} s")
    if done.exit_code != 0:
        raise GitError(f"{what}: git {args[0]} exited {done.exit_code}: {done.tail[-800:]}")
    return done.tail


async def _default_branch(path: Path, url: str, env: Mapping[str, str], timeout: float) -> str:
    said = await git(
        ["ls-remote", "--symref", "--", url, "HEAD"], path, env, timeout, "find the default branch"
    )
    for line in said.splitlines():
        ref, _, name = line.partition("\t")
        if name == "HEAD" and ref.startswith("ref: refs/heads/"):
            return ref.removeprefix("ref: refs/heads/")
    raise GitError(f"find the default branch: {url} names no HEAD branch")


def _checkout_state(root: Path, path: Path) -> str:
    """`absent`, `checkout` (a plain `.git` directory), or `foreign` (anything else)."""
    root.mkdir(parents=True, exist_ok=True)
    if not path.exists() and not path.is_symlink():
        return "absent"
    dotgit = path / ".git"
    plain = not path.is_symlink() and not dotgit.is_symlink() and dotgit.is_dir()
    return "checkout" if plain else "foreign"


def _rewrite_git_dir(dotgit: Path, kept: list[tuple[str, str]]) -> None:
    """Hooks and the files that point git elsewhere (commondir, config.worktree) go; the config
    becomes `kept` (keys of _FORMAT_KEYS) and nothing else."""
    for name in ("hooks", "commondir", "config.worktree"):
        planted = dotgit / name
        if planted.is_dir() and not planted.is_symlink():
            shutil.rmtree(planted)
        else:
            with contextlib.suppress(FileNotFoundError):
                planted.unlink()
    sections: dict[str, list[str]] = {}
    for key, value in kept:
        section, name = key.split(".", 1)
        sections.setdefault(section, []).append(f"\t{name} = {value}")
    sections.setdefault("core", []).append("\tbare = false")
    text = "".join(f"[{name}]\n" + "\n".join(lines) + "\n" for name, lines in sections.items())
    temp = dotgit / "config.agentcom"
    temp.write_text(text)
    temp.replace(dotgit / "config")


async def guard(path: Path, env: Mapping[str, str], timeout: float) -> None:
    """Make the checkout's git dir the sidecar's own again before its git touches it (see the
    module doc). Raises GitError when `path` is not a plain checkout."""
    if await asyncio.to_thread(_checkout_state, path.parent, path) != "checkout":
        raise GitError(f"{path} is not a checkout with a .git directory")
    config = path / ".git" / "config"
    kept: list[tuple[str, str]] = []
    for key in _FORMAT_KEYS:
        done = await processes.run(
            argv(["config", "--file", str(config), "--get", key]),
            path.parent,
            timeout=timeout,
            env=env,
            grace=1.0,
        )
        if done.timed_out or done.exit_code not in (0, 1):  # 1: the key is not set
            raise GitError(f"{config} cannot be read: {done.tail[-300:]}")
        value = done.tail.strip()
        if done.exit_code == 0 and _FORMAT_VALUE.fullmatch(value):
            kept.append((key, value))
    await asyncio.to_thread(_rewrite_git_dir, path / ".git", kept)


async def _clone_or_fetch(
    path: Path, url: str, env: Mapping[str, str], auth: Mapping[str, str], timeout: float
) -> None:
    state = await asyncio.to_thread(_checkout_state, path.parent, path)
    if state == "checkout":
        try:
            await guard(path, env, timeout)
        except (GitError, OSError):
            state = "foreign"
    if state == "foreign":  # nothing in it can be trusted: start again from the remote
        await asyncio.to_thread(shutil.rmtree, path, True)
    if state != "checkout":
        await git(
            ["clone", "--no-checkout", "--", url, str(path)],
            path.parent,
            dict(env) | dict(auth),
            timeout,
            f"clone {url}",
        )
        await guard(path, env, timeout)
    else:
        await git(
            ["fetch", "--prune", "--quiet", "--", url, _REFSPEC],
            path,
            dict(env) | dict(auth),
            timeout,
            f"fetch {url}",
        )


async def prepare(
    root: Path,
    url: str,
    agent_id: str,
    task_id: str,
    description: str,
    base: str | None,
    env: Mapping[str, str],
    auth: Mapping[str, str],
    timeout: float,
    *,
    same_branch: bool = False,
    pr_base: str | None = None,
) -> Workspace:
    """Clone or fetch `url`, then check out a fresh task branch from the up-to-date base.

    With `same_branch`, `base` is an existing task branch (`agentcom/<agent>/...`, never a
    person's branch nor the default one) checked out as it is on the remote, to be continued;
    `pr_base` (else the default branch) is then what its pull request merges into.
    `env` is for every git call, `auth` (credentials) is added only for those that reach `url`.
    """
    path = directory_for(root, url)
    await _clone_or_fetch(path, url, env, auth, timeout)
    if same_branch:
        if base is None or not TASK_BRANCH.match(base):
            raise GitError(f"a same-branch task continues an agentcom/<agent>/ branch, not {base}")
        branch = base
        base = pr_base or await _default_branch(path, url, dict(env) | dict(auth), timeout)
    else:
        base = base or await _default_branch(path, url, dict(env) | dict(auth), timeout)
        branch = branch_name(agent_id, task_id, description)
    if branch in (base, "main", "master"):
        raise GitError(f"refusing to work on {branch}")
    await git(["reset", "--hard", "--quiet"], path, env, timeout, "clean the workspace")
    # -ff: a nested repository a task left (with its own .git) goes too
    await git(["clean", "-ffdxq"], path, env, timeout, "clean the workspace")
    start = branch if same_branch else base
    await git(
        ["checkout", "--quiet", "--no-track", "-B", branch, f"origin/{start}"],
        path,
        env,
        timeout,
        f"branch from {start}",
    )
    await git(["clean", "-ffdxq"], path, env, timeout, "clean the workspace")
    return Workspace(path, branch, base, url, continues=same_branch)
