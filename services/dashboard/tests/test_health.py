from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import httpx
from nats.aio.client import Client

from agentcom_common.service import AnySpec
from agentcom_common.testing import NatsServer, ServiceProcess, assert_service_answers
from agentcom_dashboard.app import SPEC


async def test_starts_ready_and_answers_on_nats(
    run_service: Callable[[AnySpec], AbstractAsyncContextManager[httpx.AsyncClient]],
    nc: Client,
) -> None:
    await assert_service_answers(run_service, nc, SPEC)


def test_the_process_serves_page_static_files_and_metrics(
    nats_server: NatsServer, db_url: str, tmp_path: Path
) -> None:
    env = {"AGENTCOM_HOME": str(tmp_path / "home"), "AGENTCOM_DASHBOARD_SNAPSHOT_INTERVAL": "50ms"}
    process = ServiceProcess("dashboard", nats_server.url, db_url, tmp_path / "dash.log", env)
    process.start()
    try:
        page = httpx.get(process.url + "/", timeout=10)
        script = httpx.get(process.url + "/static/vendor/uPlot.iife.min.js", timeout=10)
        scraped = httpx.get(process.url + "/metrics", timeout=10)
    finally:
        process.stop()
    assert page.status_code == 200
    assert 'id="panel-tasks"' in page.text
    assert page.headers["x-frame-options"] == "DENY"
    assert script.status_code == 200
    assert "uPlot" in script.text
    assert scraped.status_code == 200
    assert (tmp_path / "home" / "dashboard-read.token").stat().st_mode & 0o777 == 0o600
    assert "agc_" not in (tmp_path / "dash.log").read_text()  # no token in the log
