"""The docs site builds strictly, its generated pages follow the code, and every alert rule's
runbook anchor is a real id in the built site."""

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from agentcom_dashboard.alerts import RULES

ROOT = Path(__file__).resolve().parents[1]


def docs_gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_gen", ROOT / "tools" / "docs_gen.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_pages_match_the_state_tables_and_settings_classes() -> None:
    assert docs_gen().stale() == []


def test_the_site_builds_strictly_and_has_every_runbook_anchor(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr

    missing: list[str] = []
    for rule_id, spec in RULES.items():
        page, _, anchor = spec.runbook.partition("#")
        html = tmp_path / page.removesuffix(".md") / "index.html"
        if not html.is_file() or f'id="{anchor}"' not in html.read_text():
            missing.append(f"{rule_id}: {spec.runbook}")
    assert missing == []
    # the state diagrams are mermaid blocks material draws in the browser
    assert 'class="mermaid"' in (tmp_path / "states" / "index.html").read_text()
