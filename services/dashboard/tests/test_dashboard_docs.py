"""The dashboard's settings and screenshots are where the docs say they are."""

from pathlib import Path

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


def test_the_pages_images_exist() -> None:
    for page in ("README.md", "docs/dashboard.md"):
        text = (ROOT / page).read_text()
        for image in ("dashboard.png",):
            assert f"img/{image}" in text
    for image in (
        "dashboard.png",
        "dashboard-phone.png",
        "dashboard-task.png",
        "dashboard-login.png",
    ):
        assert (ROOT / "docs" / "img" / image).stat().st_size > 10_000
