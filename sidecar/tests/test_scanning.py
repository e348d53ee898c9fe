"""The improvement scanners over real files on disk (and the real ruff binary): what each finds,
what it leaves alone, that nothing is written into the workspace, and that a scanner that
cannot run is named while the others still run."""

import asyncio
from pathlib import Path

from agentcom_sidecar import processes
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
    assert result.skipped == {}
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
    assert result.skipped == {"python.dependencies": "no pyproject.toml"}
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
    ctx = ExecutionContext({"id": "t1"}, "a1", 1, root, deadline=1e12, env=processes.scrubbed_env())
    done = asyncio.run(ScanExecutor().run(ctx))
    assert done.ok, done
    assert done.summary.startswith("8 findings (python)")  # F401 in app.py and in the test
    assert len(done.details["scan"]["findings"]) == 8
