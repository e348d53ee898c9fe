"""The change a task's branch holds against its base, read from git in full.

`workspaces.git` keeps only an output tail, which is right for progress and errors and wrong
for a diff that must be scanned line by line, so this module runs its own git (the same argv:
no hook, no fsmonitor) and reads all of stdout. Renames are read as a delete and an add
(`--no-renames`), so a file renamed to `.env` is an added `.env`; no external diff driver or
textconv runs (`--no-ext-diff --no-textconv`), and the prefixes are fixed whatever the user's
git config says, so the diff parses the same on every machine.
"""

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agentcom_common.contracts.delivery import DiffStats, FileChange
from agentcom_sidecar import processes
from agentcom_sidecar.workspaces import GitError, argv

_STATUS: dict[str, Literal["added", "modified", "deleted"]] = {
    "A": "added",
    "M": "modified",
    "T": "modified",
    "D": "deleted",
}


@dataclass(frozen=True, slots=True)
class Change:
    diff: str
    """Unified diff with no context lines (`-U0`): every added line, nothing else of the file."""
    stats: DiffStats
    sizes: Mapping[str, int]
    """Bytes of every file the branch holds (at HEAD), by repo-relative path."""
    complete: bool
    """False when the diff was longer than the limit and `diff` holds only its start."""


async def read(path: Path, base: str, env: Mapping[str, str], timeout: float, limit: int) -> Change:
    """The change `base...HEAD` in the checkout at `path`; `GitError` if git cannot say."""
    span = [f"{base}...HEAD", "--"]
    quiet = ["-c", "core.quotePath=false", "diff", "--no-color", "--no-ext-diff", "--no-renames"]
    raw = await _output(
        [*quiet, "--no-textconv", "--src-prefix=a/", "--dst-prefix=b/", "-U0", *span],
        path,
        env,
        timeout,
    )
    status = await _output([*quiet, "--name-status", "-z", *span], path, env, timeout)
    numstat = await _output([*quiet, "--numstat", "-z", *span], path, env, timeout)
    tree = await _output(["ls-tree", "-r", "-l", "-z", "HEAD"], path, env, timeout)
    return Change(
        diff=raw[:limit].decode(errors="replace"),
        stats=_stats(status.decode(errors="replace"), numstat.decode(errors="replace")),
        sizes=_sizes(tree.decode(errors="replace")),
        complete=len(raw) <= limit,
    )


async def _output(args: list[str], cwd: Path, env: Mapping[str, str], timeout: float) -> bytes:
    process = await asyncio.create_subprocess_exec(
        *argv(args),
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own group: a timeout kills git and anything it started
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await process.communicate()
    except TimeoutError:
        await _kill(process)
        raise GitError(f"read the change: git timed out after {timeout:g} s") from None
    except asyncio.CancelledError:  # the task was cancelled: leave no git running in the checkout
        await _kill(process)
        raise
    if process.returncode != 0:
        said = err.decode(errors="replace").strip()[-800:]
        raise GitError(f"read the change: git exited {process.returncode}: {said}")
    return out


async def _kill(process: asyncio.subprocess.Process) -> None:
    processes.kill_group(process.pid)
    await process.wait()


def _stats(status: str, numstat: str) -> DiffStats:
    kinds: dict[str, Literal["added", "modified", "deleted"]] = {}
    fields = status.split("\0")
    for code, name in zip(fields[0::2], fields[1::2], strict=False):
        if name:
            kinds[name] = _STATUS.get(code[:1], "modified")
    files: list[FileChange] = []
    for entry in numstat.split("\0"):
        added, _, rest = entry.partition("\t")
        removed, _, name = rest.partition("\t")
        if not name:
            continue
        binary = added == "-"
        files.append(
            FileChange(
                path=name[:1000],
                status=kinds.get(name, "modified"),
                added=0 if binary else int(added),
                removed=0 if binary else int(removed),
                binary=binary,
            )
        )
    files.sort(key=lambda f: f.path)
    return DiffStats(
        files=files[:500],
        files_changed=len(files),
        lines_added=sum(f.added for f in files),
        lines_removed=sum(f.removed for f in files),
    )


def _sizes(tree: str) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for entry in tree.split("\0"):
        meta, _, name = entry.partition("\t")
        parts = meta.split()
        if name and len(parts) == 4 and parts[1] == "blob" and parts[3].isdigit():
            sizes[name] = int(parts[3])
    return sizes
