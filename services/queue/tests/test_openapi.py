"""schemathesis fuzzes the queue's OpenAPI against the real process: no input may cause a 5xx."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from agentcom_common.testing import ServiceProcess

pytestmark = pytest.mark.system


def test_no_generated_request_gets_a_server_error(
    queue_process: ServiceProcess, admin_token: str, tmp_path: Path
) -> None:
    schemathesis = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [
            str(schemathesis),
            "run",
            f"{queue_process.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--header",
            f"Authorization: Bearer {admin_token}",
            "--max-examples",
            "25",
            "--seed",
            "4",
            "--request-timeout",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
    )

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    tested = re.search(r"Tested: (\d+)", result.stdout)
    assert tested is not None
    assert int(tested[1]) >= 16  # every operation of /api/tasks and /api/repos was exercised
