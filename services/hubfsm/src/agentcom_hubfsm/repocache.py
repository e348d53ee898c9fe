"""A read-only cache of the goals' repos: one bare mirror per URL, fetched before each plan.

The planner reads a repo's file tree, README and recent history from here (`snapshot`), so a
plan names the repo's real files, never the hub's own working directory. The hub never checks
anything out and never writes into a repo: a mirror is only cloned and fetched.

Every git call is an argv list with `--` before the URL and a deadline (the process is killed
at it); hooks and fsmonitor are off on the command line, where they outrank every config file;
the environment has no terminal prompt. A URL with a password in it is refused: argv is
readable by every user of the machine (`ps`). Credentials, where a repo needs them, come from
the hub user's own git configuration (a credential helper, an SSH agent), never from here.
"""

import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from agentcom_common.errors import InvalidError, UnavailableError

_NEVER_RUN: Final = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "protocol.ext.allow=never",
)
_REFSPECS: Final = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
_README: Final = re.compile(r"(?i)^readme(\.(md|markdown|rst|txt|adoc))?$")
_SECRET_NAME: Final = re.compile(r"(?i)(token|secret|passw|api[_-]?key|auth|private)")


class RepoUnavailableError(UnavailableError):
    """git could not clone or fetch the repo (network, a wrong URL, a deadline): the plan
    waits; a retry may work once the repo is reachable."""

    default_code = "repo_unavailable"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the planner sees of a repo at its HEAD."""

    url: str
    head: str | None
    """The commit (full hash); None for a repo with no commit yet."""
    files: tuple[str, ...]
    readme: tuple[str, str] | None
    """(path, text up to `readme_limit` characters), when the top folder has a README."""
    history: tuple[str, ...]
    """`git log --oneline` of HEAD, newest first."""


def directory_for(root: Path, url: str) -> Path:
    """A readable, collision-free folder name for a repo URL."""
    readable = re.sub(r"[^a-z0-9]+", "-", url.lower()).strip("-")[-60:].strip("-") or "repo"
    return root / f"{readable}-{hashlib.sha256(url.encode()).hexdigest()[:12]}.git"


def refuse_credentials(url: str) -> None:
    """A password in the URL would show in argv (and in the mirror's config): refuse it."""
    parts = urlsplit(url)
    if parts.password is not None or (parts.scheme in ("http", "https") and parts.username):
        raise InvalidError(
            "repo: the URL carries credentials; give the hub access through git's own "
            "configuration (a credential helper or an SSH key) and use the plain URL",
            field="repo",
        )


def _clear(partial: Path) -> None:
    """Make room for a clone at `partial`: the folders above it exist, nothing is at it."""
    partial.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(partial, ignore_errors=True)


class RepoCache:
    """Mirrors under `root`; one `snapshot` per URL at a time (a per-URL lock), many URLs at
    once."""

    def __init__(
        self, root: Path, *, timeout: float = 300.0, readme_limit: int = 6000, history: int = 20
    ) -> None:
        self.root = root
        self.timeout = timeout
        self.readme_limit = readme_limit
        self.history = history
        self._locks: dict[Path, asyncio.Lock] = {}

    async def snapshot(self, url: str) -> Snapshot:
        """Clone (first use) or fetch `url`, then read its tree, README and history at HEAD.

        Raises `InvalidError` (credentials in the URL), `RepoUnavailableError` (git failed)."""
        url = url.strip()
        refuse_credentials(url)
        path = directory_for(self.root, url)
        async with self._locks.setdefault(path, asyncio.Lock()):
            await self._update(path, url)
            return await self._read(path, url)

    async def conflicts(self, url: str, base: str, head: str) -> list[str]:
        """Fetch `url`, then the files that conflict when branch `head` merges into branch
        `base` (`git merge-tree --write-tree`, which writes no ref and touches no worktree);
        [] when it merges cleanly. Raises like `snapshot`."""
        url = url.strip()
        refuse_credentials(url)
        path = directory_for(self.root, url)
        async with self._locks.setdefault(path, asyncio.Lock()):
            await self._update(path, url)
            said = await self._git(
                path,
                "merge-tree",
                "--write-tree",
                "--name-only",
                "--no-messages",
                f"refs/heads/{base}",  # a full ref name: never read as an option
                f"refs/heads/{head}",
                what="merge-tree",
                conflicted=True,
            )
        # the first line is the merged tree; the conflicted files follow, one a line
        return [line for line in said.splitlines()[1:] if line]

    async def blob(self, url: str, name: str, limit: int = 20_000) -> str | None:
        """The first `limit` characters of file `name` at HEAD of the mirror `snapshot` made
        (no fetch: read right after a snapshot); None when there is no such file."""
        url = url.strip()
        refuse_credentials(url)
        path = directory_for(self.root, url)
        async with self._locks.setdefault(path, asyncio.Lock()):
            head = await self._head(path)
            if head is None or name.startswith("-"):
                return None
            try:
                text = await self._git(path, "cat-file", "blob", f"{head}:{name}", what="blob")
            except RepoUnavailableError:
                return None  # no such file at HEAD
        return text[:limit]

    async def recent_diff(self, url: str, commits: int, limit: int) -> tuple[str | None, str]:
        """Fetch `url`, then (HEAD, the patches of its last `commits` commits, newest first,
        cut to `limit` characters); (None, "") for a repo with no commit. No external diff
        driver or textconv runs (`--no-ext-diff --no-textconv`). Raises like `snapshot`."""
        url = url.strip()
        refuse_credentials(url)
        path = directory_for(self.root, url)
        async with self._locks.setdefault(path, asyncio.Lock()):
            await self._update(path, url)
            head = await self._head(path)
            if head is None:
                return None, ""
            patches = await self._git(
                path,
                "log",
                "-p",
                "--no-color",
                "--no-ext-diff",
                "--no-textconv",
                "--no-decorate",
                "--format=commit %H%n%s%n",
                f"-n{commits}",
                head,
                what="diff",
            )
        return head, patches[:limit]

    async def _update(self, path: Path, url: str) -> None:
        if await asyncio.to_thread(path.is_dir):
            await self._git(
                path, "fetch", "--prune", "--quiet", "--", url, *_REFSPECS, what=f"fetch {url}"
            )
            return
        # cloned beside and renamed: a clone cut short (deadline, crash) never looks like a
        # mirror to the next call
        partial = path.with_name(path.name + ".partial")
        await asyncio.to_thread(_clear, partial)
        try:
            await self._git(
                self.root,
                "clone",
                "--mirror",
                "--quiet",
                "--",
                url,
                str(partial),
                what=f"clone {url}",
            )
        except BaseException:
            _clear(partial)  # in this thread: a cancelled task must still clean up
            raise
        await asyncio.to_thread(partial.rename, path)

    async def _read(self, path: Path, url: str) -> Snapshot:
        head = await self._head(path)
        if head is None:
            return Snapshot(url, None, (), None, ())
        listing = await self._git(path, "ls-tree", "-r", "-z", "--name-only", head, what="list")
        files = tuple(name for name in listing.split("\0") if name)
        log = await self._git(
            path, "log", "--oneline", "--no-decorate", f"-n{self.history}", head, what="log"
        )
        readme = next((f for f in files if "/" not in f and _README.match(f)), None)
        text = None
        if readme is not None:
            blob = await self._git(path, "cat-file", "blob", f"{head}:{readme}", what="readme")
            text = (readme, blob[: self.readme_limit])
        return Snapshot(url, head, files, text, tuple(log.splitlines()))

    async def _head(self, path: Path) -> str | None:
        try:
            said = await self._git(path, "rev-parse", "--verify", "HEAD^{commit}", what="head")
        except RepoUnavailableError:
            # an empty repo has a HEAD naming a branch with no commit yet; anything else
            # wrong with the mirror shows in the listing that would follow
            listed = await self._git(path, "for-each-ref", "--count=1", what="refs")
            if listed.strip():
                raise
            return None
        return said.strip()

    async def _git(self, cwd: Path, *args: str, what: str, conflicted: bool = False) -> str:
        """git's output; `conflicted`: exit 1 is an answer too (merge-tree found conflicts)."""
        env = {k: v for k, v in os.environ.items() if not _SECRET_NAME.search(k)}
        env |= {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
        proc = await asyncio.create_subprocess_exec(
            "git",
            *_NEVER_RUN,
            *args,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own group: the deadline kills git's helpers too
        )
        try:
            async with asyncio.timeout(self.timeout):
                out, err = await proc.communicate()
        except BaseException as exc:  # the deadline, or the caller cancelled: git must not stay
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            if isinstance(exc, TimeoutError):
                raise RepoUnavailableError(
                    f"{what}: git {args[0]} took longer than {self.timeout:g} s", retry_after=30
                ) from None
            raise
        if proc.returncode != 0 and not (conflicted and proc.returncode == 1):
            tail = err.decode(errors="replace").strip()[-500:]
            raise RepoUnavailableError(
                f"{what}: git {args[0]} exited {proc.returncode}: {tail}", retry_after=30
            )
        return out.decode(errors="replace")
