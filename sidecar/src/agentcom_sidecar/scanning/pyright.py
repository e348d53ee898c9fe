"""Pyright over the workspace, when the repo configures it (`pyrightconfig.json`, or
`[tool.pyright]` in `pyproject.toml`): its settings decide what is an error. The sidecar's own
`pyright` (beside its Python, else on PATH; the `pyright` package bundles the checker and runs
it with the machine's `node`, offline with `--outputjson`).

Pyright reads files and imports none of them, but it asks a Python interpreter for its import
paths: it is given the sidecar's own (`--pythonpath`), never one from the workspace. Where the
agent can make namespaces it runs in the sandbox (`namespaces.Confinement`: no network, the
workspace the only writable place, the agent's config and state hidden). Third-party imports
resolve against the sidecar's environment, not the repo's (its dependencies are not installed
in a checkout), so an unresolved import is the agent's environment, not the repo's problem:
those rules are left out. One finding per rule and file, like ruff's: no line numbers in it."""

import asyncio
import json
import shutil
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, cast

from agentcom_common.contracts.scan import ScanFinding, Severity
from agentcom_sidecar import namespaces
from agentcom_sidecar.scanning import tool
from agentcom_sidecar.scanning.findings import SkippedError, finding

TIMEOUT: Final = 300.0
# the environment's, not the repo's (see above)
UNRESOLVED: Final = frozenset({"reportMissingImports", "reportMissingModuleSource"})
SEVERITY: Final[dict[str, Severity]] = {"error": "medium", "warning": "low"}


def binary() -> str | None:
    beside = Path(sys.executable).with_name("pyright")
    return str(beside) if beside.is_file() else shutil.which("pyright")


def configured(root: Path) -> bool:
    if (root / "pyrightconfig.json").is_file():
        return True
    try:
        data = tomllib.loads((root / "pyproject.toml").read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    tools = data.get("tool")
    return isinstance(tools, dict) and isinstance(
        cast(dict[str, object], tools).get("pyright"), dict
    )


async def scan(
    root: Path, env: Mapping[str, str], confine: namespaces.Confinement | None
) -> list[ScanFinding]:
    if not await asyncio.to_thread(configured, root):
        raise SkippedError("the repo does not configure pyright")
    pyright = binary()
    if pyright is None:
        raise SkippedError("no pyright on this agent")
    argv = [pyright, "--outputjson", "--pythonpath", sys.executable, "."]
    if confine is not None:
        argv = confine.argv(root, argv)
    # 0: no errors, 1: errors found; 2 and up: pyright could not check (its output says why)
    out = await tool.run("pyright", argv, root, env, timeout=TIMEOUT, ok=(0, 1))
    try:
        report = cast(dict[str, Any], json.loads(out))
        items = cast(list[dict[str, Any]], report["generalDiagnostics"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SkippedError(f"pyright's output is not its JSON report: {exc}") from None
    return await asyncio.to_thread(_findings, root, items)


def _findings(root: Path, items: list[dict[str, Any]]) -> list[ScanFinding]:
    by_rule: dict[tuple[str, str], tuple[Severity, list[str]]] = {}
    base = root.resolve()
    for item in items:
        rule = str(item.get("rule") or "error")
        severity = SEVERITY.get(str(item.get("severity")))
        if severity is None or rule in UNRESOLVED:
            continue
        try:
            path = Path(str(item.get("file", ""))).resolve().relative_to(base).as_posix()
        except ValueError:
            continue  # outside the workspace: not the repo's
        start = cast(
            dict[str, Any], cast(dict[str, Any], item.get("range") or {}).get("start") or {}
        )
        line = start.get("line")
        row = line + 1 if isinstance(line, int) else "?"
        message = str(item.get("message", "")).split("\n")[0]
        worst, lines = by_rule.get((rule, path), (severity, []))
        if severity == "medium":
            worst = severity
        lines.append(f"{path}:{row} {rule} {message}")
        by_rule[(rule, path)] = (worst, lines)
    return [
        finding("type_error", severity, f"Fix pyright {rule} in {path}", rule, [path], lines)
        for (rule, path), (severity, lines) in sorted(by_rule.items())
    ]
