"""Every health-issue category of the hub links a runbook section that docs/runbooks.md has."""

import re
from pathlib import Path

from agentcom_common.contracts.health import IssueCategory, runbook

ROOT = Path(__file__).resolve().parents[1]


def anchors(page: Path) -> set[str]:
    """The explicit `{#id}` anchors of a page's headings (attr_list, as the site builds them)."""
    return set(re.findall(r"^#+ .*\{#([A-Za-z0-9_-]+)\}\s*$", page.read_text(), re.MULTILINE))


def test_every_issue_category_links_a_runbook_section_that_exists() -> None:
    missing: list[str] = []
    for category in IssueCategory:
        page, _, anchor = runbook(category).partition("#")
        if anchor not in anchors(ROOT / page):
            missing.append(f"{category.value}: {runbook(category)}")
    assert missing == []
