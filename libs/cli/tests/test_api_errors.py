"""A service that answers with something other than our problem JSON still gets a one-line
CLI error, not a traceback (a proxy's 502 page, an empty 500)."""

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentcom_cli.main import app as cli
from agentcom_common.testing import free_port


class _ProxyPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html><body>502 Bad Gateway</body></html>"
        self.send_response(502)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: ARG002 - quiet
        return None


@pytest.fixture
def proxy_as_scheduler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    port = free_port()
    server = HTTPServer(("127.0.0.1", port), _ProxyPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AGENTCOM_TOKEN", "not-checked-by-the-proxy")
    monkeypatch.setenv("AGENTCOM_PORT_OFFSET", str(port - 8102))  # the scheduler's port
    monkeypatch.setenv("AGENTCOM_HOME", str(tmp_path / "home"))
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_non_json_error_reply_is_one_line_naming_the_status(proxy_as_scheduler: None) -> None:
    result = CliRunner().invoke(cli, ["agent", "list"])

    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "HTTP 502" in result.output
    assert "Traceback" not in result.output
