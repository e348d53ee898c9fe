"""The queue's settings are documented in docs/configuration.md."""

from pathlib import Path

from agentcom_common.settings import CommonSettings
from agentcom_queue.settings import QueueSettings

PAGE = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def test_every_queue_setting_is_documented() -> None:
    page = PAGE.read_text()
    own = set(QueueSettings.model_fields) - set(CommonSettings.model_fields)

    assert own
    assert [name for name in sorted(own) if f"`AGENTCOM_{name.upper()}`" not in page] == []
