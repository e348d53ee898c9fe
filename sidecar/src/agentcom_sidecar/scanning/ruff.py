"""Ruff over the workspace: the sidecar's own `ruff` binary (beside its Python, else on PATH),
with the repo's ruff configuration if it has one. Ruff reads files and runs none of them;
`--no-cache` keeps it from writing `.ruff_cache` into the work (which would be committed).
One finding per rule and file: fixing it is one change, and line numbers stay out of it."""

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, cast

from agentcom_common.contracts.scan import ScanFinding
from agentcom_sidecar.scanning.findings import SkippedError, finding

TIMEOUT: Final = 120.0
MAX_OUTPUT: Final = 20_000_000


def binary() -> str | None:
    beside = Path(sys.executable).with_name("ruff")
    return str(beside) if beside.is_file() else shutil.which("ruff")


async def _run(argv: list[str], cwd: Path, env: Mapping[str, str]) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(TIMEOUT):
            out, err = await proc.communicate()
    except BaseException:  # the deadline or a cancel: the whole group goes
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise
    if proc.returncode != 0:
        raise SkippedError(f"ruff exited {proc.returncode}: {err.decode(errors='replace')[:300]}")
    return out[:MAX_OUTPUT]


async def scan(root: Path, env: Mapping[str, str]) -> list[ScanFinding]:
    ruff = binary()
    if ruff is None:
        raise SkippedError("no ruff binary on this agent")
    argv = [ruff, "check", "--no-cache", "--exit-zero", "--output-format", "json", "."]
    try:
        out = await _run(argv, root, env)
    except TimeoutError:
        raise SkippedError(f"ruff took longer than {TIMEOUT:g} s") from None
    try:
        items = cast(list[dict[str, Any]], json.loads(out))
    except ValueError as exc:
        raise SkippedError(f"ruff's output is not JSON: {exc}") from None
    return await asyncio.to_thread(_findings, root, items)


def _findings(root: Path, items: list[dict[str, Any]]) -> list[ScanFinding]:
    by_rule: dict[tuple[str, str], list[str]] = {}
    base = root.resolve()
    for item in items:
        code = str(item.get("code") or "syntax")
        try:
            path = Path(str(item.get("filename", ""))).resolve().relative_to(base).as_posix()
        except ValueError:
            continue  # outside the workspace: not the repo's
        row = cast(dict[str, Any], item.get("location") or {}).get("row", "?")
        by_rule.setdefault((code, path), []).append(f"{path}:{row} {code} {item.get('message')}")
    return [
        finding(
            "lint",
            "medium" if code.startswith(("F", "E9")) or "syntax" in code else "low",
            f"Fix ruff {code} in {path}",
            code,
            [path],
            lines,
        )
        for (code, path), lines in sorted(by_rule.items())
    ]
