"""Every alert rule names a runbook section that docs/runbooks.md has."""

import re
from pathlib import Path

from agentcom_dashboard.alerts import RULES

DOCS = Path(__file__).resolve().parents[3] / "docs"


def anchors(page: Path) -> set[str]:
    """The explicit `{#id}` anchors of a page's headings (attr_list, as the site builds them)."""
    return set(re.findall(r"^#+ .*\{#([A-Za-z0-9_-]+)\}\s*$", page.read_text(), re.MULTILINE))


def test_every_alert_rule_names_a_runbook_anchor_that_exists() -> None:
    missing: list[str] = []
    for rule_id, spec in RULES.items():
        page, _, anchor = spec.runbook.partition("#")
        if not page or not anchor or anchor not in anchors(DOCS / page):
            missing.append(f"{rule_id}: {spec.runbook!r}")

    assert missing == []
