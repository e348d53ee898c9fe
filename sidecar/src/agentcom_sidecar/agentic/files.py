"""Bodies of the file tools: read, write, list, search. Paths always go through the sandbox.

Blocking file work runs in a thread so the event loop (heartbeats, reports) keeps going.
"""

import asyncio
import fnmatch
import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from agentcom_sidecar.agentic import search
from agentcom_sidecar.agentic.sandbox import Sandbox, SandboxError

if TYPE_CHECKING:
    from agentcom_sidecar.agentic.tools import ListDirectory, ReadFile, SearchFiles, WriteFile

_SKIP_DIRS: Final = search.SKIP_DIRS
_MAX_DEPTH: Final = 5


def _is_binary(head: bytes) -> bool:
    return b"\x00" in head[:8192]


def _protect_git(sandbox: Sandbox, real: Path) -> None:
    # hooks or config planted in .git would run outside the sandbox at the sidecar's own commit
    git = sandbox.root / ".git"
    if real == git or git in real.parents:
        raise SandboxError("protected_path", ".git is read-only to the agent; the sidecar commits")


async def read_file(args: "ReadFile", sandbox: Sandbox) -> dict[str, Any]:
    real = sandbox.resolve(args.path)
    return await asyncio.to_thread(_read, sandbox, real, args)


def _read(sandbox: Sandbox, real: Path, args: "ReadFile") -> dict[str, Any]:
    if not real.exists():
        raise SandboxError("file_not_found", f"{args.path} does not exist")
    if not real.is_file():
        raise SandboxError("not_a_file", f"{args.path} is not a regular file")
    limit = sandbox.settings.agentic_file_max_bytes
    fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW)  # a symlink swapped in since resolve: refused
    with os.fdopen(fd, "rb") as handle:
        raw = handle.read(limit + 1)
    if _is_binary(raw):
        raise SandboxError("binary_file", f"{args.path} looks binary (NUL bytes)")
    truncated = len(raw) > limit
    lines = raw[:limit].decode(errors="replace").splitlines(keepends=True)
    start = args.start_line or 1
    end = min(args.end_line or len(lines), len(lines))
    return {
        "path": sandbox.relative(real),
        "content": "".join(lines[start - 1 : end]),
        "start_line": start,
        "end_line": end,
        "total_lines": len(lines),
        "truncated": truncated,
    }


async def write_file(args: "WriteFile", sandbox: Sandbox) -> dict[str, Any]:
    real = sandbox.resolve(args.path)
    _protect_git(sandbox, real)
    data = args.content.encode()
    if len(data) > sandbox.settings.agentic_file_max_bytes:
        raise SandboxError("file_too_large", f"content is {len(data)} bytes; the cap is lower")
    return await asyncio.to_thread(_write, sandbox, real, data)


def _write(sandbox: Sandbox, real: Path, data: bytes) -> dict[str, Any]:
    if real.is_dir():
        raise SandboxError("is_a_directory", f"{sandbox.relative(real)} is a folder")
    real.parent.mkdir(parents=True, exist_ok=True)
    # the parent was resolved and checked; re-check after mkdir in case it raced into a symlink
    if sandbox.resolve(str(real.parent)) != real.parent:
        raise SandboxError("path_outside_workspace", "the folder changed while writing")
    created = not real.exists()
    tmp = real.with_name(f".{real.name}.agentcom-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, real)  # whole file or nothing: a kill mid-write leaves the old content
    return {"path": sandbox.relative(real), "bytes_written": len(data), "created": created}


async def list_directory(args: "ListDirectory", sandbox: Sandbox) -> dict[str, Any]:
    real = sandbox.resolve(args.path)
    if not real.is_dir():
        raise SandboxError("not_a_directory", f"{args.path} is not a folder")
    return await asyncio.to_thread(_list, sandbox, real, args)


def _list(sandbox: Sandbox, real: Path, args: "ListDirectory") -> dict[str, Any]:
    limit = sandbox.settings.agentic_list_max_entries
    entries: list[dict[str, Any]] = []
    truncated = False
    stack = [(real, 0)]
    while stack and not truncated:
        folder, depth = stack.pop()
        with os.scandir(folder) as scan:
            for entry in sorted(scan, key=lambda e: e.name):
                kind = _kind(entry)
                descend = kind == "dir" and entry.name not in _SKIP_DIRS
                if args.recursive and descend and depth + 1 < _MAX_DEPTH:
                    stack.append((Path(entry.path), depth + 1))
                if args.pattern and not fnmatch.fnmatch(entry.name, args.pattern):
                    continue
                if len(entries) >= limit:
                    truncated = True
                    break
                size = entry.stat(follow_symlinks=False).st_size if kind == "file" else None
                rel = Path(entry.path).relative_to(sandbox.root).as_posix()
                entries.append({"name": rel, "type": kind, "size": size})
    return {"path": sandbox.relative(real), "entries": entries, "truncated": truncated}


def _kind(entry: os.DirEntry[str]) -> str:
    if entry.is_symlink():
        return "symlink"  # never followed while listing; read it and the sandbox checks it
    if entry.is_dir(follow_symlinks=False):
        return "dir"
    return "file" if entry.is_file(follow_symlinks=False) else "other"


async def search_files(args: "SearchFiles", sandbox: Sandbox) -> dict[str, Any]:
    real = sandbox.resolve(args.path)
    try:
        re.compile(args.pattern)
    except re.error as exc:
        raise SandboxError("invalid_regex", f"pattern: {exc}") from None
    s = sandbox.settings
    params = {
        "root": str(sandbox.root),
        "start": str(real),
        "pattern": args.pattern,
        "file_pattern": args.file_pattern,
        "max_matches": min(args.max_results, s.agentic_search_max_matches),
        "max_files": s.agentic_search_max_files,
        "max_file_bytes": s.agentic_file_max_bytes,
        "max_output": s.agentic_output_cap - 1024,  # the reply must fit the captured output
    }
    argv = [sys.executable, "-I", "-m", "agentcom_sidecar.agentic.search", json.dumps(params)]
    timeout = s.agentic_command_timeout.total_seconds()
    result = await sandbox.run(argv, timeout)
    if result.timed_out:
        raise SandboxError(
            "timeout", f"the search took over {timeout:g} s; use a simpler pattern or a folder"
        )
    if result.exit_code != 0:
        raise SandboxError("search_failed", result.stderr[-500:] or f"exit {result.exit_code}")
    return json.loads(result.stdout)
