"""`agentcom doctor`: what `agentcom up` needs, whether it is there, and how to fix it."""

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass

from rich.table import Table

from agentcom_cli import stack
from agentcom_cli.console import out
from agentcom_common import embedded
from agentcom_common.settings import SERVICE_NAMES, CommonSettings


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    ok: bool
    detail: str
    fix: str = ""


def _python() -> Finding:
    ok = sys.version_info >= (3, 11)
    return Finding(
        "python", ok, sys.version.split()[0], "" if ok else "install Python 3.11 or newer"
    )


def _binary(name: str, argv: Callable[[], list[str]]) -> Finding:
    try:
        result = subprocess.run(argv(), capture_output=True, text=True, timeout=10)
    except (embedded.EmbeddedError, OSError, subprocess.TimeoutExpired) as exc:
        return Finding(name, False, str(exc), "run `uv sync` to install the embedded servers")
    version = (result.stdout or result.stderr).strip().splitlines()[0:1]
    ok = result.returncode == 0
    return Finding(
        name,
        ok,
        version[0] if version else f"exit {result.returncode}",
        "" if ok else "reinstall with `uv sync --reinstall`",
    )


def _home(settings: CommonSettings) -> Finding:
    home = settings.home.resolve()
    target = home if home.exists() else home.parent
    if not os.access(target, os.W_OK):
        return Finding(
            "home", False, f"{target} is not writable", "set AGENTCOM_HOME to a writable dir"
        )
    return Finding("home", True, str(home))


def _postgres_account(settings: CommonSettings) -> Finding:
    if os.geteuid() != 0:
        return Finding("postgres account", True, "runs as you")
    home = settings.home.resolve()
    for parent in [home, *home.parents]:
        if parent.exists() and not parent.stat().st_mode & 0o001:
            return Finding(
                "postgres account",
                False,
                f"running as root: Postgres runs as {embedded.POSTGRES_OS_USER}, "
                f"which cannot enter {parent}",
                f"chmod o+x {parent}, or set AGENTCOM_HOME elsewhere",
            )
    return Finding(
        "postgres account", True, f"root: Postgres will run as {embedded.POSTGRES_OS_USER}"
    )


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports(settings: CommonSettings) -> Finding:
    if stack.read(settings.home) is not None:
        return Finding("ports", True, "in use by the running stack")
    wanted = {name: settings.port(name) for name in SERVICE_NAMES}
    if not settings.nats_url:
        wanted |= {"nats": settings.nats_client_port, "nats monitor": settings.nats_http_port}
    busy = [f"{name} {port}" for name, port in wanted.items() if not _port_free(port)]
    if busy:
        return Finding(
            "ports",
            False,
            "busy: " + ", ".join(busy),
            "stop what holds them, or run `agentcom up --port-offset 100`",
        )
    return Finding("ports", True, ", ".join(str(p) for p in wanted.values()) + " free")


def _external(settings: CommonSettings) -> Finding:
    given = [n for n, v in (("NATS", settings.nats_url), ("Postgres", settings.database_url)) if v]
    if given:
        return Finding("servers", True, f"external {' and '.join(given)} from the environment")
    return Finding("servers", True, "embedded NATS and Postgres under the home directory")


def run(settings: CommonSettings) -> list[Finding]:
    return [
        _python(),
        _binary("nats-server", lambda: [str(embedded.nats_server_binary()), "--version"]),
        _binary("postgres", lambda: [str(embedded.postgres_bin_dir() / "postgres"), "--version"]),
        _home(settings),
        _postgres_account(settings),
        _ports(settings),
        _external(settings),
    ]


def render(findings: list[Finding], as_json: bool) -> bool:
    healthy = all(f.ok for f in findings)
    if as_json:
        out().print_json(stack.dumps({"healthy": healthy, "checks": [asdict(f) for f in findings]}))
        return healthy
    table = Table(title="agentcom doctor", title_justify="left")
    for column in ("check", "state", "detail", "fix"):
        table.add_column(column)
    for f in findings:
        table.add_row(f.check, "[green]ok[/]" if f.ok else "[red]problem[/]", f.detail, f.fix)
    out().print(table)
    return healthy
