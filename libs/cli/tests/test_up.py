"""`agentcom up` as a user runs it: a real process tree, killed and interrupted for real."""

import asyncio
import json
import os
import re
import signal
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
from nats.aio.client import Client
from nats.errors import Error as NatsError

from agentcom_common.settings import SERVICE_NAMES
from agentcom_common.testing import NatsServer, shared_tmpdir
from up_stack import Stack, cli, cli_env, free_offset, ready, wait_all_ready, wait_until

pytestmark = pytest.mark.system


@pytest.fixture
def home() -> Path:
    return shared_tmpdir("agentcom-up-") / "state"


async def _nats_login(config: dict[str, Any]) -> str:
    """Log in to the stack's NATS the way a sidecar does with its config."""
    nc = Client()

    async def quiet(_exc: Exception) -> None:
        return None

    try:
        await nc.connect(
            config["nats_url"],
            user=config["nats_user"],
            password=config["nats_password"],
            allow_reconnect=False,
            max_reconnect_attempts=0,
            error_cb=quiet,
        )
    except NatsError:
        return "refused"
    finally:
        await nc.close()
    return "ok"


# starts the stack, kills a part and waits for its restart, then stops it: on a loaded 2-core
# machine that can pass the suite's 120 s; a hang still fails
@pytest.mark.timeout(360)
def test_up_serves_everything_survives_kill_9_and_stops_clean(home: Path) -> None:
    env = cli_env(home)
    offset = str(free_offset())
    up = Stack(home, env, "--port-offset", offset)
    try:
        services: dict[str, str] = up.stack["services"]
        assert set(services) == set(SERVICE_NAMES)
        assert all(ready(str(url)) for url in services.values())
        wait_until(lambda: "next, in another terminal:" in up.output(), 30, "the next command")
        shown = up.output()
        for part in ("nats", "postgres", "admin token", *SERVICE_NAMES):  # a line each, timed
            assert re.search(rf"^  {part} +\S.* +[0-9.]+ s$", shown, re.M), (part, shown)
        assert "agentcom repo add" in shown  # nothing registered yet: the first step
        embedded_db = up.stack["database_url"]
        assert embedded_db in shown  # the whole URL (80 columns cut it before)
        table = [
            line for line in shown.splitlines() if line.split(" ")[0] in {"part", "nats", *services}
        ]
        assert len(table) == 2 + len(services)
        assert all(len(line) <= 80 for line in table), table

        # from another directory: where the stack is, not "no token"
        unset = {k: v for k, v in env.items() if k != "AGENTCOM_HOME"}
        elsewhere = cli(unset, "task", "list", cwd=home.parent)
        assert elsewhere.returncode == 1
        assert "no stack in this directory" in elsewhere.stderr
        assert str(home) in elsewhere.stderr  # found from the running `agentcom up`

        status = cli(env, "status", "--json")
        assert status.returncode == 0, status.stdout + status.stderr
        parts = {p["part"]: p for p in json.loads(status.stdout)["parts"]}
        assert all(p["ok"] for p in parts.values()), parts
        assert parts["nats.micro"]["detail"].startswith("5 of 5")

        second = cli(env, "up", "--port-offset", offset)
        assert second.returncode == 1
        assert "already running" in second.stderr

        victim = up.service_pid("queue")
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        queue_url = str(services["queue"])
        wait_until(lambda: up.service_pid("queue") not in (None, victim), 30, "a new queue process")
        wait_until(lambda: ready(queue_url), 30, "the restarted queue to be ready")
        wait_until(
            lambda: up.stack["children"]["queue"] == up.service_pid("queue"), 10, "stack.json"
        )

        made = cli(env, "token", "create", "--role", "viewer", "--name", "ci", "--json")
        assert made.returncode == 0, made.stderr
        token_id = json.loads(made.stdout)["token_id"]
        assert cli(env, "token", "revoke", token_id).returncode == 0
        listed = json.loads(cli(env, "token", "list", "--json").stdout)
        assert {t["token_id"]: t["revoked_at"] is not None for t in listed}[token_id]

        added = cli(env, "agent", "add", "--capability", "python", "--json")
        assert added.returncode == 0, added.stderr
        agent = json.loads(added.stdout)
        config = Path(agent["config"])
        assert config.stat().st_mode & 0o077 == 0
        written = json.loads(config.read_text())
        assert written["agent_id"] == agent["id"]
        assert agent["command"] == f"agentcom sidecar run --config {config}"
        assert "@" not in written["nats_url"]  # the hub's own login never reaches an agent
        assert asyncio.run(_nats_login(written)) == "ok"
        assert asyncio.run(_nats_login(written | {"nats_user": None})) == "refused"
        rotated = cli(env, "agent", "rotate", agent["id"], "--json")
        assert rotated.returncode == 0, rotated.stderr
        assert asyncio.run(_nats_login(written)) == "refused"
        assert asyncio.run(_nats_login(json.loads(config.read_text()))) == "ok"
        assert cli(env, "agent", "remove", agent["id"]).returncode == 0
        assert not config.exists()

        tree = up.tree()
        assert {"nats-server", "postgres"} <= {p.name() for p in tree}
    finally:
        code = up.interrupt()

    assert code == 0
    alive = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [p.cmdline() for p in alive]
    assert not (home / "stack.json").exists()


# ten service processes on a loaded 2-core machine: as generous as the whole-stack tests
@pytest.mark.timeout(420)
def test_up_with_two_replicas_runs_each_service_twice_and_either_queue_takes_tasks(
    home: Path,
) -> None:
    env = cli_env(home)
    up = Stack(home, env, "--port-offset", str(free_offset(replicas=2)), "--replicas", "2")
    try:
        wait_all_ready(up)
        services: dict[str, str] = up.stack["services"]
        assert set(services) == {*SERVICE_NAMES, *(f"{name}-2" for name in SERVICE_NAMES)}
        for name in SERVICE_NAMES:  # the second replica listens 10 ports up
            first, second = urlsplit(services[name]).port, urlsplit(services[f"{name}-2"]).port
            assert (first, second) == (first, (first or 0) + 10)
        wait_until(lambda: "Ctrl-C stops everything" in up.output(), 60, "the table")
        rows = {line.split(" ")[0] for line in up.output().splitlines()}
        assert set(services) <= rows  # each replica has its row in the table

        token = (home / "admin.token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        ids: list[str] = []
        for name in ("queue", "queue-2"):
            made = httpx.post(
                f"{services[name]}/api/tasks",
                json={"description": f"through {name}"},
                headers=headers,
                timeout=30,
            )
            assert made.status_code == 201, made.text
            ids.append(made.json()["id"])
        for name, task_id in zip(("queue-2", "queue"), ids, strict=True):  # one database
            seen = httpx.get(f"{services[name]}/api/tasks/{task_id}", headers=headers, timeout=30)
            assert seen.status_code == 200, seen.text

        status = cli(env, "status", "--json")
        parts = {p["part"]: p for p in json.loads(status.stdout)["parts"]}
        assert parts["nats.micro"]["detail"].startswith("10 of 10"), parts["nats.micro"]
        assert all(parts[name]["ok"] for name in services), parts
    finally:
        assert up.interrupt() == 0


@pytest.mark.timeout(360)  # two starts of the stack
def test_second_run_reuses_data_and_admin_token(home: Path) -> None:
    env = cli_env(home)
    first = Stack(home, env, "--port-offset", str(free_offset()))
    token = (home / "admin.token").read_text()
    assert (home / "admin.token").stat().st_mode & 0o077 == 0
    made = cli(env, "token", "create", "--role", "agent", "--name", "kept", "--json")
    assert first.interrupt() == 0

    again = Stack(home, env, "--port-offset", str(free_offset()))
    try:
        assert (home / "admin.token").read_text() == token
        names = {t["name"] for t in json.loads(cli(env, "token", "list", "--json").stdout)}
        assert json.loads(made.stdout)["name"] in names
    finally:
        assert again.interrupt() == 0


def test_with_server_urls_set_it_starts_no_servers(
    home: Path, db_url: str, nats_server: NatsServer
) -> None:
    env = cli_env(home, AGENTCOM_NATS_URL=nats_server.url, AGENTCOM_DATABASE_URL=db_url)
    up = Stack(home, env, "--port-offset", str(free_offset()))
    try:
        names = {p.name() for p in up.tree()}
        assert "nats-server" not in names
        assert "postgres" not in names
        assert cli(env, "status").returncode == 0
    finally:
        assert up.interrupt() == 0


def test_doctor_reports_a_busy_port_with_the_fix(home: Path) -> None:
    offset = free_offset()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 8101 + offset))
        blocker.listen()
        result = cli(cli_env(home, AGENTCOM_PORT_OFFSET=str(offset)), "doctor", "--json")

    assert result.returncode == 1
    checks = {c["check"]: c for c in json.loads(result.stdout)["checks"]}
    assert not checks["ports"]["ok"]
    assert str(8101 + offset) in checks["ports"]["detail"]
    assert "--port-offset" in checks["ports"]["fix"]


def test_bad_setting_is_one_line_without_traceback(home: Path) -> None:
    result = cli(cli_env(home, AGENTCOM_PORT_OFFSET="many"), "status")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "port_offset" in result.stderr


def test_status_with_nothing_running_says_down_quickly(home: Path) -> None:
    offset = free_offset()
    result = cli(cli_env(home, AGENTCOM_PORT_OFFSET=str(offset)), "status", "--json")

    assert result.returncode == 1
    parts = {p["part"]: p for p in json.loads(result.stdout)["parts"]}
    assert not parts["nats"]["ok"]
    assert not parts["queue"]["ok"]
    assert "Traceback" not in result.stderr
