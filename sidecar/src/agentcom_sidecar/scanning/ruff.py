"""Ruff over the workspace: the sidecar's own `ruff` binary (beside its Python, else on PATH),
with the repo's ruff configuration if it has one. Ruff reads files and runs none of them;
`--no-cache` keeps it from writing `.ruff_cache` into the work (which would be committed).
One finding per rule and file: fixing it is one change, and line numbers stay out of it."""

import asyncio
import json
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, cast

from agentcom_common.contracts.scan import ScanFinding
from agentcom_sidecar import namespaces
from agentcom_sidecar.scanning import tool
from agentcom_sidecar.scanning.findings import SkippedError, finding

TIMEOUT: Final = 120.0


def binary() -> str | None:
    beside = Path(sys.executable).with_name("ruff")
    return str(beside) if beside.is_file() else shutil.which("ruff")


async def scan(
    root: Path, env: Mapping[str, str], confine: namespaces.Confinement | None
) -> list[ScanFinding]:
    del confine  # ruff reads files and runs nothing: it needs no sandbox
    ruff = binary()
    if ruff is None:
        raise SkippedError("no ruff binary on this agent")
    argv = [ruff, "check", "--no-cache", "--exit-zero", "--output-format", "json", "."]
    out = await tool.run("ruff", argv, root, env, timeout=TIMEOUT)
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
