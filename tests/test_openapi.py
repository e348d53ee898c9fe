"""schemathesis, every check, on every service's OpenAPI against the real process: 0 failures.

Each service runs as its own process (`python -m agentcom_<name>`) on a fresh NATS and
database, and schemathesis (`--checks all`, config in `schemathesis.toml` beside this file)
generates valid and invalid requests from the published document and checks each answer
against it: no 5xx but a declared 503, every status declared, bodies matching their schema,
405 with `Allow`, invalid input refused, valid input accepted. Examples are bounded and the
seed fixed, so the five runs take about a minute on two cores.
"""

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentcom_common.settings import SERVICE_NAMES
from agentcom_common.testing import NatsServer, ServiceProcess

pytestmark = pytest.mark.system

EXAMPLES = 40  # per operation and phase
SEED = 5


@pytest.fixture(params=SERVICE_NAMES)
def service(
    request: pytest.FixtureRequest,
    nats_server: NatsServer,
    db_url: str,
    admin_token: str,
    tmp_path: Path,
) -> Iterator[ServiceProcess]:
    name: str = request.param
    env = {"AGENTCOM_ADMIN_TOKEN": admin_token}
    process = ServiceProcess(name, nats_server.url, db_url, tmp_path / f"{name}.log", env)
    process.start()
    yield process
    process.stop()


# the hub now has 20+ operations: at 2 cores under load its run took 230-300 s
@pytest.mark.timeout(900)
def test_every_check_passes_on_every_operation(
    service: ServiceProcess, admin_token: str, tmp_path: Path
) -> None:
    schemathesis = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [
            str(schemathesis),
            "--config-file",
            str(Path(__file__).with_name("schemathesis.toml")),
            "run",
            f"{service.url}/openapi.json",
            "--checks",
            "all",
            "--header",
            f"Authorization: Bearer {admin_token}",
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            str(SEED),
            "--workers",
            "1",
            "--request-timeout",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=870,
        check=False,
        cwd=tmp_path,
    )

    output = result.stdout[-20000:] + result.stderr[-2000:]
    assert result.returncode == 0, output
    operations = re.search(r"Operations:\s+(\d+) selected / (\d+) total", result.stdout)
    tested = re.search(r"Tested: (\d+)", result.stdout)
    assert operations is not None, output
    assert tested is not None, output
    assert int(tested[1]) == int(operations[2]), output  # every operation was exercised
