"""`testing.start_nats` hands out only a server it started: a port that another listener holds
(a free port taken between `free_port` and the bind) is never mistaken for its own."""

import socket
import threading
from pathlib import Path

import pytest

from agentcom_common.testing import free_port, start_nats


def impostor(port: int, stop: threading.Event) -> threading.Thread:
    """A listener on `port` that greets like a NATS server without auth (another test's)."""
    listener = socket.create_server(("127.0.0.1", port))
    listener.settimeout(0.05)

    def serve() -> None:
        with listener:
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                with conn:
                    conn.sendall(b'INFO {"server_name":"someone-else","auth_required":false}\r\n')

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_a_port_another_server_holds_is_refused(tmp_path: Path) -> None:
    port = free_port()
    stop = threading.Event()
    thread = impostor(port, stop)
    try:
        with pytest.raises(RuntimeError, match=f"did not start on {port}"):
            start_nats(tmp_path / "js", port)
    finally:
        stop.set()
        thread.join()


def test_its_own_server_is_handed_out_and_a_restart_on_its_store_is_too(tmp_path: Path) -> None:
    server = start_nats(tmp_path / "js")
    port = int(server.address.rsplit(":", 1)[1])
    server.stop()
    again = start_nats(tmp_path / "js", port, server.auth)
    try:
        assert again.address == server.address
        assert again.process.poll() is None
    finally:
        again.stop()
