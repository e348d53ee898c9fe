"""A shell task from the command line, as a new user runs it: the queue and the scheduler as
processes on one port offset, `agentcom repo add`, `agentcom agent add --allow-hub-commands
--executor shell`, a real sidecar from the config that wrote, `agentcom task submit --command
--check`, and `agentcom task watch` (the installed script) printing the task's moves and its
command's output as the sidecar reports them.
"""

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any

import pytest
from nats.aio.client import Client
from typer.testing import CliRunner, Result

from agentcom_cli.main import app as cli
from agentcom_common import subjects
from agentcom_common.contracts.agent import ToolCallReport
from agentcom_common.testing import NatsServer, ServiceProcess

Env = dict[str, str]
AGENTCOM = str(Path(sys.executable).parent / "agentcom")
# the sidecar's timers a test shortens (as tests/conftest.py's SIDECAR_TIMERS): it waits for
# conditions, not for defaults
FAST_SIDECAR = {"heartbeat_interval": 0.3, "inbox_fetch_timeout": 0.2, "progress_interval": 0.1}


@pytest.fixture
async def stack(
    nats_server: NatsServer, db_url: str, admin_token: str, tmp_path: Path
) -> AsyncIterator[Env]:
    """The env a user's shell has: the stack's port offset, NATS URL and admin token."""
    queue = ServiceProcess("queue", nats_server.url, db_url, tmp_path / "queue.log")
    offset = int(queue.env["AGENTCOM_PORT_OFFSET"])
    scheduler = ServiceProcess(
        "scheduler",
        nats_server.url,
        db_url,
        tmp_path / "scheduler.log",
        env={
            "AGENTCOM_SCHEDULER_NATS_ISSUER_SEED": nats_server.auth.issuer_seed,
            "AGENTCOM_SCHEDULER_SWEEP_INTERVAL": "100ms",
            "AGENTCOM_SCHEDULER_HEARTBEAT_INTERVAL": "300ms",
            "AGENTCOM_SCHEDULER_MISSED_HEARTBEATS": "10",
            "AGENTCOM_SCHEDULER_ACCEPT_TIMEOUT": "20s",
        },
        port_offset=offset,
    )
    await asyncio.to_thread(queue.start)
    try:
        await asyncio.to_thread(scheduler.start)
        base = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCOM_")}
        yield base | {
            "AGENTCOM_TOKEN": admin_token,
            "AGENTCOM_PORT_OFFSET": str(offset),
            "AGENTCOM_HOME": str(tmp_path / "home"),
            "AGENTCOM_NATS_URL": nats_server.url,
        }
    finally:
        await asyncio.to_thread(scheduler.stop)
        await asyncio.to_thread(queue.stop)


async def agentcom(env: Env, *args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=env)


class Watch:
    """`agentcom task watch` as its own process, its stdout read as it prints."""

    def __init__(self, env: Env, task_id: str, *flags: str) -> None:
        self.process = subprocess.Popen(
            [AGENTCOM, "task", "watch", task_id, *flags],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.errors = ""

    async def until(self, text: str, timeout: float = 60) -> None:
        """Read lines until one contains `text` (the process may end meanwhile)."""
        assert self.process.stdout is not None
        out: IO[str] = self.process.stdout
        stop_at = time.monotonic() + timeout
        while not any(text in seen for seen in self.lines):
            assert time.monotonic() < stop_at, (text, self.lines)
            got = await asyncio.wait_for(asyncio.to_thread(out.readline), timeout=timeout)
            assert got, (text, self.lines)
            self.lines.append(got.rstrip("\n"))

    def end(self) -> int:
        """Wait for it to end (stopped if it has not within 30 s); its exit code."""
        try:
            rest, self.errors = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            rest, self.errors = self.process.communicate()
        self.lines += rest.splitlines()
        return self.process.returncode


async def test_a_shell_task_from_the_cli_is_watched_to_completed_with_its_output(
    stack: Env, repos: Any, sidecars: Any, tmp_path: Path
) -> None:
    origin: Path = repos.origin(tmp_path, {"README.md": "hi\n"})
    assert (await agentcom(stack, "repo", "add", str(origin))).exit_code == 0

    bad = await agentcom(stack, "agent", "add", "Bad Name!")
    assert bad.exit_code == 1
    assert "^[a-z0-9][a-z0-9-]{0,62}$" in bad.output  # the pattern whole: no markup ate it

    added = await agentcom(
        stack, "agent", "add", "builder", "--allow-hub-commands", "--executor", "shell", "--json"
    )
    assert added.exit_code == 0, added.output
    config = Path(json.loads(added.output)["config"])
    written = json.loads(await asyncio.to_thread(config.read_text))
    assert (written["allow_hub_commands"], written["executors"]) == (True, ["shell"])
    await asyncio.to_thread(config.write_text, json.dumps(written | FAST_SIDECAR))

    command = "sh -c 'echo first line; echo second line; echo done > out.txt'"
    made = await agentcom(
        stack, "task", "submit", "write out.txt", "--command", command,
        "--check", "file_exists:out.txt", "--check", "git_clean", "--json",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    task_id = json.loads(made.output)["id"]

    watch = Watch(stack, task_id)
    live = Watch(stack, task_id, "--json")
    try:
        await watch.until("-> queued")  # subscribed, history read: now the agent may start
        await live.until('"to_state": "queued"')
        sidecars.start("builder", config)
        await watch.until("-> completed", timeout=90)
    finally:
        codes = [watch.end(), live.end()]
    assert codes == [0, 0], (watch.lines, watch.errors, live.lines, live.errors)
    shown = "\n".join(watch.lines)
    assert "  | first line" in shown, shown
    assert "  | second line" in shown, shown
    assert shown.index("-> working") < shown.index("first line") < shown.index("-> completed")
    records = [json.loads(text) for text in live.lines]
    progress = [r for r in records if r.get("kind") == "progress"]
    assert "first line" in [text for r in progress for text in r["lines"]], records
    assert (records[-1]["kind"], records[-1]["to_state"]) == ("transition", "completed")

    again = await agentcom(stack, "task", "watch", task_id)  # an ended task: its history, exit 0
    assert again.exit_code == 0, again.output
    assert "-> completed" in again.output


async def test_watch_prints_the_tool_calls_of_its_task_only_and_refuses_an_unknown_task(
    stack: Env, nats_server: NatsServer
) -> None:
    made = await agentcom(stack, "task", "submit", "look around", "--json")
    task_id = json.loads(made.output)["id"]
    watch = Watch(stack, task_id)
    nc = Client()
    await nc.connect(nats_server.url)
    try:
        await watch.until("-> queued")
        for task, tool in ((task_id, "read_file"), ("task-0000000000000000", "write_file")):
            call = ToolCallReport(
                kind="tool_call", agent_id="builder", task_id=task, generation=1, seq=0,
                tool=tool, arguments="path=calc.py", result="def add(a, b): ...", ok=True,
                duration_ms=12.0,
            )  # fmt: skip
            # the body the scheduler relays from the agent, on the subject it relays it to
            await nc.publish(subjects.TASK_TOOL_CALL, call.model_dump_json().encode())
        await watch.until("tool read_file(path=calc.py) ok in 12 ms")
        await watch.until("-> def add(a, b): ...")
        cancelled = await agentcom(stack, "task", "cancel", task_id, "--yes", "--json")
        assert cancelled.exit_code == 0, cancelled.output
        assert json.loads(cancelled.output)["state"] == "cancelled"
        await watch.until("-> cancelled")
    finally:
        await nc.close()
        code = watch.end()
    assert code == 1  # it ended, not completed
    assert not any("write_file" in text for text in watch.lines)  # another task's

    made_token = await agentcom(stack, "token", "create", "--name", "a rather long token name")
    assert made_token.exit_code == 0, made_token.output
    narrow = await agentcom(stack | {"COLUMNS": "60"}, "token", "list")
    ids = [
        t["token_id"] for t in json.loads((await agentcom(stack, "token", "list", "--json")).output)
    ]
    assert all(token_id in narrow.output for token_id in ids), narrow.output  # whole, copyable

    unknown = await agentcom(stack, "task", "watch", "task-0000000000000000")
    assert unknown.exit_code == 1
    assert "task_not_found" in unknown.output
    assert "Traceback" not in unknown.output
