"""`agentcom up` as a user runs it, for the tests that need a whole stack: a real process
tree in its own home, the `agentcom` command beside this interpreter (`test_up`,
`test_backup`)."""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil

AGENTCOM = str(Path(sys.executable).parent / "agentcom")


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_offset(replicas: int = 1) -> int:
    """A port offset whose ports are free, those of `up --replicas` too."""
    services = [p + 10 * k for p in (8100, 8101, 8102, 8103, 8104) for k in range(replicas)]
    for _ in range(50):
        offset = random.randrange(1000, 19000)
        if all(port_free(p + offset) for p in (*services, 4222, 8222)):
            return offset
    raise RuntimeError("no free port offset")


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCOM_")}
    return env | {"AGENTCOM_HOME": str(home)} | extra


def cli(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AGENTCOM, *args], env=env, capture_output=True, text=True, timeout=60, check=False, cwd=cwd
    )


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    stop_at = time.monotonic() + timeout
    while time.monotonic() < stop_at:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Stack:
    def __init__(self, home: Path, env: dict[str, str], *args: str) -> None:
        self.home = home
        self.env = env
        self.log = (home.parent / f"{home.name}-up.log").open("w")
        self.process = subprocess.Popen(
            [AGENTCOM, "up", *args],
            env=env | {"COLUMNS": "80"},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._started, 180, f"stack.json (see {self.log.name})")

    def output(self) -> str:
        """What `up` printed so far (stdout and stderr)."""
        self.log.flush()
        return Path(self.log.name).read_text()

    def _started(self) -> bool:
        assert self.process.poll() is None, Path(self.log.name).read_text()
        return (self.home / "stack.json").exists()

    @property
    def stack(self) -> dict[str, Any]:
        return json.loads((self.home / "stack.json").read_text())

    def tree(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def service_pid(self, name: str) -> int | None:
        module = "agentcom_" + name.replace("-", "_")
        for child in psutil.Process(self.process.pid).children():
            try:
                if module in child.cmdline():
                    return child.pid
            except psutil.NoSuchProcess:
                continue
        return None

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=30)
        self.log.close()
        return code


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_all_ready(up: Stack, timeout: float = 120) -> None:
    """`stack.json` appears after READY_DEADLINE even when a service is not ready yet (a busy
    machine): a test that calls the services waits for every /readyz."""
    for url in up.stack["services"].values():
        wait_until(lambda u=url: ready(str(u)), timeout, f"{url}/readyz")
