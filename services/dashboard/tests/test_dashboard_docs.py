"""The dashboard's settings and screenshots are where the docs say they are."""

from pathlib import Path

import test_agent_loop_page
import test_screenshots
import test_task_live

from agentcom_common.settings import CommonSettings
from agentcom_dashboard.settings import AlertThresholds, DashboardSettings

ROOT = Path(__file__).resolve().parents[3]


def test_every_dashboard_setting_and_threshold_is_documented() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    own = [n for n in DashboardSettings.model_fields if n not in CommonSettings.model_fields]
    missing = [f"AGENTCOM_{n.upper()}" for n in own] + [
        f"AGENTCOM_DASHBOARD_ALERT_{n.upper()}" for n in AlertThresholds.model_fields
    ]
    assert [name for name in missing if f"`{name}`" not in page] == []


def test_the_pages_images_exist_and_each_is_taken_by_a_real_run() -> None:
    for page in ("README.md", "docs/dashboard.md"):
        text = (ROOT / page).read_text()
        for image in ("dashboard.png",):
            assert f"img/{image}" in text
    # the tests that take them, each with real sidecars: no committed picture is staged
    taken = {*test_screenshots.SHOTS, test_agent_loop_page.TASK_SHOT, test_task_live.TASK_SHOT}
    committed = {p.name for p in (ROOT / "docs" / "img").glob("*.png")}
    assert committed == taken
    shown = (ROOT / "docs" / "dashboard.md").read_text()
    for image in sorted(taken):
        assert f"img/{image}" in shown
        assert (ROOT / "docs" / "img" / image).stat().st_size > 10_000
