"""The sidecar's verification instruments, read from the process's metrics as OTLP sends them."""

from pathlib import Path

import pytest

from agentcom_common import metering
from agentcom_common.contracts.task import FileExists
from agentcom_common.testing import metric
from agentcom_sidecar import verification

pytestmark = pytest.mark.usefixtures("meters")


async def test_verification_verdicts_and_checks_are_counted(tmp_path: Path) -> None:
    (tmp_path / "done.txt").write_text("ok")
    steps = [
        FileExists(type="file_exists", path="done.txt"),
        FileExists(type="file_exists", path="no.txt"),
    ]
    before = metering.render()
    report = await verification.run_checks(steps, tmp_path, {})
    after = metering.render()
    assert report.status == "fail"

    def grew(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert grew("agentcom_verifications_total", verdict="fail") == 1
    assert grew("agentcom_verification_check_duration_seconds_count", passed="True") == 1
    assert grew("agentcom_verification_check_duration_seconds_count", passed="False") == 1
