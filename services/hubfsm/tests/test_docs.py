from pathlib import Path

from agentcom_common.settings import CommonSettings
from agentcom_hubfsm.settings import HubSettings

DOCS = Path(__file__).parents[3] / "docs"


def test_every_hub_setting_is_documented() -> None:
    own = set(HubSettings.model_fields) - set(CommonSettings.model_fields)
    for page in ("hub.md", "configuration.md"):
        text = (DOCS / page).read_text()
        assert [n for n in sorted(own) if f"AGENTCOM_{n.upper()}" not in text] == [], page
