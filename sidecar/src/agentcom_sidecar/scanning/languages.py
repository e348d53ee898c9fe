"""Scanners by language: a language is found in a workspace by `detect`, and each of its
scanners runs in turn (one that cannot run is named in the result with why; the others still
run). Python is the first; another language registers its own (`register`)."""

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from agentcom_common.contracts.scan import RANK, ScanFinding, ScanResult
from agentcom_sidecar import namespaces
from agentcom_sidecar.scanning import pyright, python, ruff, tree
from agentcom_sidecar.scanning.findings import SkippedError

Scanner = Callable[
    [Path, Mapping[str, str], namespaces.Confinement | None], Awaitable[list[ScanFinding]]
]
"""(workspace, scrubbed env, the sandbox a scanner's binary runs in where the agent has one)"""
MAX_FINDINGS = 200  # a task result stays small; the worst come first


@dataclass(frozen=True, slots=True)
class Language:
    name: str
    detect: Callable[[Path], bool]
    scanners: Mapping[str, Scanner]


def _reading(scan: Callable[[Path, list[str]], list[ScanFinding]], suffix: str) -> Scanner:
    """A scanner over the files of one suffix, in a thread (it parses many files)."""

    async def run(
        root: Path, env: Mapping[str, str], confine: namespaces.Confinement | None
    ) -> list[ScanFinding]:
        del env, confine  # reads files only, in this process
        return await asyncio.to_thread(lambda: scan(root, tree.files(root, suffix)))

    return run


PYTHON = Language(
    "python",
    lambda root: (root / "pyproject.toml").is_file() or bool(tree.files(root, ".py")),
    {
        "ruff": ruff.scan,
        "pyright": pyright.scan,
        "missing_tests": _reading(python.missing_tests, ".py"),
        "missing_docstrings": _reading(python.missing_docstrings, ".py"),
        "dependencies": _reading(python.dependencies, ".py"),
    },
)
LANGUAGES: dict[str, Language] = {PYTHON.name: PYTHON}


def register(language: Language) -> None:
    LANGUAGES[language.name] = language


async def scan(
    root: Path, env: Mapping[str, str], confine: namespaces.Confinement | None = None
) -> ScanResult:
    """Every registered language found in `root`, every scanner of each; highest severity
    first, at most `MAX_FINDINGS`. `confine`: the sandbox for scanners that run a binary
    which could reach beyond reading files (pyright asks an interpreter for its paths)."""
    found: list[ScanFinding] = []
    skipped: dict[str, str] = {}
    names: list[str] = []
    for language in LANGUAGES.values():
        if not await asyncio.to_thread(language.detect, root):
            continue
        names.append(language.name)
        for name, scanner in language.scanners.items():
            try:
                found += await scanner(root, env, confine)
            except SkippedError as exc:
                skipped[f"{language.name}.{name}"] = str(exc)[:500]
    found.sort(key=lambda f: (-RANK[f.severity], f.category, f.fingerprint))
    return ScanResult(languages=names, findings=found[:MAX_FINDINGS], skipped=skipped)
