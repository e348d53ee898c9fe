"""The improvement scanners over real files on disk (and the real ruff binary): what each finds,
what it leaves alone, that nothing is written into the workspace, and that a scanner that
cannot run is named while the others still run."""

import asyncio
from pathlib import Path

from agentcom_common.contracts.scan import ScanFinding
from agentcom_common.testing import task_view
from agentcom_sidecar import namespaces, processes
from agentcom_sidecar.config import SidecarConfig
from agentcom_sidecar.executors import registry
from agentcom_sidecar.executors.base import ExecutionContext
from agentcom_sidecar.executors.scan import ScanExecutor
from agentcom_sidecar.scanning import languages

FILES = {
    "pyproject.toml": '[project]\nname = "shop"\nversion = "1"\n'
    'dependencies = ["requests>=2", "PyYAML", "shop-extras"]\n'
    '[project.optional-dependencies]\ndev = ["pytest"]\n'
    '[tool.ruff.lint]\nselect = ["F"]\n',
    "src/shop/__init__.py": "",
    "src/shop/app.py": "import os\nimport yaml\nimport httpx\nfrom shop import db\n\n\n"
    "def main():\n    return yaml, httpx, db\n\n\nasync def serve():\n    pass\n\n\n"
    'def _private():\n    pass\n\n\ndef documented():\n    """Yes."""\n',
    "src/shop/db.py": 'def connect():\n    """Open."""\n',
    "src/shop/broken.py": "def (:\n",
    "tests/test_app.py": "import pytest\nimport shop_extras\nfrom shop import app\n",
    ".venv/lib/site.py": "import nothing_of_ours\n",
}


def workspace(tmp_path: Path, files: dict[str, str] = FILES) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_the_python_scanners_find_the_known_issues(tmp_path: Path) -> None:
    root = workspace(tmp_path)
    before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    result = asyncio.run(languages.scan(root, processes.scrubbed_env()))
    by = {(f.category, f.subject): f for f in result.findings}
    assert result.languages == ["python"]
    assert result.skipped == {"python.pyright": "the repo does not configure pyright"}
    assert set(by) == {
        ("lint", "F401"),  # os in app.py
        ("lint", "invalid-syntax"),  # broken.py
        ("missing_tests", "shop.db"),
        ("missing_tests", "shop.broken"),
        ("missing_docstring", "shop.app"),
        ("unused_dependency", "requests"),
        ("missing_dependency", "httpx"),
    }, sorted(by)
    assert by[("lint", "F401")].files == ["src/shop/app.py"]
    assert by[("missing_docstring", "shop.app")].evidence == [
        "src/shop/app.py:7 def main",
        "src/shop/app.py:11 def serve",
    ]
    assert by[("missing_dependency", "httpx")].evidence == ["src/shop/app.py:3 imports httpx"]
    assert result.findings[0].severity == "high"  # worst first
    # nothing written into the work: no .ruff_cache, no __pycache__
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == before


def test_a_scanner_that_cannot_run_is_named_and_the_others_run(tmp_path: Path) -> None:
    root = workspace(tmp_path, {"tool.py": "import os\n\n\ndef run():\n    return os\n"})
    result = asyncio.run(languages.scan(root, processes.scrubbed_env()))
    assert result.skipped == {
        "python.dependencies": "no pyproject.toml",
        "python.pyright": "the repo does not configure pyright",
    }
    assert {f.category for f in result.findings} == {"missing_tests", "missing_docstring"}
    empty = asyncio.run(languages.scan(workspace(tmp_path / "none", {"a.txt": "x"}), {}))
    assert (empty.languages, empty.findings) == ([], [])


def test_the_scan_executor_is_opt_in_and_returns_its_findings(tmp_path: Path) -> None:
    config = SidecarConfig.model_validate(
        {
            "agent_id": "a1",
            "token": "t",
            "nats_url": "nats://127.0.0.1:4222",
            "state_dir": str(tmp_path / "state"),
            "workspaces_dir": str(tmp_path / "ws"),
        }
    )
    assert registry.unavailable("scan", config) is not None  # not in the default executors
    scanning = config.model_copy(update={"executors": ["scan"]})
    assert registry.unavailable("scan", scanning) is None  # no allow_hub_commands needed
    root = workspace(tmp_path / "w")
    ctx = ExecutionContext(
        task_view(id="t1"), "a1", 1, root, deadline=1e12, env=processes.scrubbed_env()
    )
    done = asyncio.run(ScanExecutor().run(ctx))
    assert done.ok, done
    assert done.summary.startswith("8 findings (python)")  # F401 in app.py and in the test
    assert len(done.details["scan"]["findings"]) == 8


TYPED = {
    "pyproject.toml": '[project]\nname = "till"\nversion = "1"\n'
    '[tool.pyright]\ninclude = ["src"]\n[tool.ruff.lint]\nselect = ["F"]\n',
    "src/till/__init__.py": "",
    # a real type error (an int returned as str), and an import no environment has
    "src/till/total.py": "import not_installed_anywhere\n\n\n"
    'def total(prices: list[int]) -> str:\n    """Sum."""\n    return sum(prices)\n',
    "tests/test_total.py": "from till import total\n",
}


def _typed(result_findings: list[ScanFinding]) -> list[ScanFinding]:
    return [f for f in result_findings if f.category == "type_error"]


def test_pyright_reports_the_type_errors_of_a_repo_that_configures_it(tmp_path: Path) -> None:
    root = workspace(tmp_path / "w", TYPED)
    before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    env = processes.scrubbed_env()
    confine = namespaces.Confinement((tmp_path / "hidden",)) if namespaces.available() else None
    result = asyncio.run(languages.scan(root, env, confine))
    assert "python.pyright" not in result.skipped, result.skipped
    [found] = _typed(result.findings)  # the unresolved import is the agent's, not the repo's
    assert (found.subject, found.severity, found.files) == (
        "reportReturnType",
        "medium",
        ["src/till/total.py"],
    )
    assert found.title == "Fix pyright reportReturnType in src/till/total.py"
    assert found.evidence[0].startswith(
        'src/till/total.py:6 reportReturnType Type "int" is not assignable to return type "str"'
    ), found.evidence
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == before

    # the same error two lines lower is the same finding: no line number in the fingerprint
    moved = root / "src/till/total.py"
    moved.write_text("# prices\n# in cents\n" + moved.read_text())
    [again] = _typed(asyncio.run(languages.scan(root, env, confine)).findings)
    assert again.evidence[0].startswith("src/till/total.py:8 reportReturnType")
    assert again.fingerprint == found.fingerprint

    # fixed, nothing is left
    moved.write_text(moved.read_text().replace("-> str", "-> int"))
    assert _typed(asyncio.run(languages.scan(root, env, confine)).findings) == []


def test_the_scan_executor_runs_pyright_in_the_sandbox_where_it_can(tmp_path: Path) -> None:
    root = workspace(tmp_path / "w", TYPED)
    secret = tmp_path / "agent.json"
    secret.write_text("{}")
    ctx = ExecutionContext(
        task_view(id="t1"), "a1", 1, root, deadline=1e12, env=processes.scrubbed_env()
    )
    done = asyncio.run(ScanExecutor((secret,)).run(ctx))
    assert done.ok, done
    isolation = "namespaces" if namespaces.available() else "none"
    assert done.details["isolation"] == isolation
    typed = [f for f in done.details["scan"]["findings"] if f["category"] == "type_error"]
    assert [f["subject"] for f in typed] == ["reportReturnType"], done.details
