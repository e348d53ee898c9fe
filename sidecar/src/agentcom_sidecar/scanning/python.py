"""Python's scanners that read source with `ast` (nothing is imported or run): modules no test
mentions, public functions without docstrings, and dependencies declared in `pyproject.toml`
but never imported, or imported but never declared.

A module counts as tested when a test file is named `test_<module>.py` or imports a dotted
name with the module's name in it. A dependency counts as used when some module (tests too)
imports its normalised name or a known alias (`ALIASES`: the import name differs from the
distribution's). Dependencies used only by name (a CLI, a plugin) look unused here: the hub
keeps such findings low-priority goals, and a person may close them.
"""

import ast
import re
import sys
import tomllib
from pathlib import Path
from typing import Any, Final, cast

from agentcom_common.contracts.scan import ScanFinding
from agentcom_sidecar.scanning.findings import SkippedError, finding

# import name -> distribution, where they differ (the common ones)
ALIASES: Final = {
    "yaml": "pyyaml",
    "pil": "pillow",
    "bs4": "beautifulsoup4",
    "sklearn": "scikit-learn",
    "cv2": "opencv-python",
    "dateutil": "python-dateutil",
    "dotenv": "python-dotenv",
    "jwt": "pyjwt",
    "attr": "attrs",
    "magic": "python-magic",
    "google": "protobuf",
}
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def norm(name: str) -> str:
    """PEP 503's normal form, with `_` (so import names compare)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def is_test(path: str) -> bool:
    parts = path.split("/")
    name = parts[-1]
    return (
        any(p in ("tests", "test", "testing") for p in parts[:-1])
        or name.startswith("test_")
        or name.endswith("_test.py")
        or name == "conftest.py"
    )


def module_name(path: str) -> str:
    parts = path.removesuffix(".py").split("/")
    if parts[0] == "src" and len(parts) > 1:
        parts = parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _parse(root: Path, path: str) -> ast.Module | None:
    try:
        return ast.parse((root / path).read_bytes(), filename=path)
    except (SyntaxError, ValueError, OSError):
        return None  # ruff reports syntax errors; here such a file is simply not read


def _imports(tree: ast.Module) -> list[tuple[str, int]]:
    """Absolute imports: (dotted name, line)."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, node.lineno))
            found += [(f"{node.module}.{a.name}", node.lineno) for a in node.names]
    return found


def missing_tests(root: Path, files: list[str]) -> list[ScanFinding]:
    tests = [f for f in files if is_test(f)]
    named = {Path(f).stem.removeprefix("test_").removesuffix("_test") for f in tests}
    mentioned: set[str] = set()
    for path in tests:
        if (tree := _parse(root, path)) is not None:
            mentioned |= {part for name, _ in _imports(tree) for part in name.split(".")}
    found: list[ScanFinding] = []
    for path in files:
        stem = Path(path).stem
        if is_test(path) or stem in ("__init__", "__main__") or stem in named | mentioned:
            continue
        module = module_name(path)
        why = f"no test file is named test_{stem}.py or imports {stem}"
        found.append(
            finding("missing_tests", "medium", f"Add tests for {module}", module, [path], [why])
        )
    return found


def missing_docstrings(root: Path, files: list[str]) -> list[ScanFinding]:
    found: list[ScanFinding] = []
    for path in files:
        if is_test(path) or (tree := _parse(root, path)) is None:
            continue
        bare = [
            f"{path}:{node.lineno} def {node.name}"
            for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and not node.name.startswith("_")
            and ast.get_docstring(node) is None
        ]
        if bare:
            module = module_name(path)
            title = f"Add docstrings to {len(bare)} public functions of {module}"
            found.append(finding("missing_docstring", "low", title, module, [path], bare))
    return found


def _declared(root: Path) -> tuple[list[str], set[str]]:
    """(the project's dependencies, every name declared anywhere: optional ones too)."""
    try:
        data = tomllib.loads((root / "pyproject.toml").read_text())
    except FileNotFoundError:
        raise SkippedError("no pyproject.toml") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise SkippedError(f"pyproject.toml unreadable: {exc}") from None
    project = data.get("project")
    if not isinstance(project, dict):
        raise SkippedError("pyproject.toml has no [project] table")
    table = cast(dict[str, Any], project)

    def names(value: object) -> list[str]:
        items = cast(list[object], value) if isinstance(value, list) else []
        return [m.group(1) for i in items if isinstance(i, str) and (m := _NAME.match(i))]

    main = names(table.get("dependencies"))
    optional = table.get("optional-dependencies")
    extra = cast(dict[str, object], optional) if isinstance(optional, dict) else {}
    groups = data.get("dependency-groups")
    more = cast(dict[str, object], groups) if isinstance(groups, dict) else {}
    everything = {norm(n) for n in main}
    for value in [*extra.values(), *more.values()]:
        everything |= {norm(n) for n in names(value)}
    own = table.get("name")
    if isinstance(own, str):
        everything.add(norm(own))
    return main, everything


def _local(files: list[str]) -> set[str]:
    """Top-level names the repo itself provides (its packages and modules)."""
    return {norm(module_name(f).split(".")[0]) for f in files if module_name(f)}


def dependencies(root: Path, files: list[str]) -> list[ScanFinding]:
    main, declared = _declared(root)
    local = _local(files) | {"__future__"}
    stdlib = {norm(n) for n in sys.stdlib_module_names}
    used: dict[str, list[str]] = {}  # distribution (normal form) -> where imported
    for path in files:
        if (tree := _parse(root, path)) is None:
            continue
        for name, line in _imports(tree):
            top = norm(name.split(".")[0])
            if top in local or top in stdlib:
                continue
            used.setdefault(norm(ALIASES.get(top, top)), []).append(f"{path}:{line}")
    found: list[ScanFinding] = []
    for dist in main:
        if norm(dist) not in used:
            why = "declared in [project].dependencies of pyproject.toml; no module imports it"
            title = f"Remove the unused dependency {dist}"
            found.append(
                finding("unused_dependency", "medium", title, norm(dist), ["pyproject.toml"], [why])
            )
    for dist, where in sorted(used.items()):
        if dist in declared or all(is_test(w.split(":")[0]) for w in where):
            continue
        evidence = [f"{w} imports {dist}" for w in sorted(set(where))]
        title = f"Declare the dependency {dist}"
        found.append(
            finding("missing_dependency", "high", title, dist, ["pyproject.toml"], evidence)
        )
    return found
