"""`agentcom goal …` against a real hub process, as a user types them.

No model answers here (no gateway runs): a goal stays in `planning`, waiting to retry, which is
all intake, listing, cancelling and watching need. Retry, approve and reject need a plan from a
model: `tests/test_goal_cli_flow.py` runs them with the gateway and a fake model.
"""

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from agentcom_cli.main import app as cli
from agentcom_common.testing import NatsServer, ServiceProcess

Env = dict[str, str]


@pytest.fixture
async def hub_process(
    nats_server: NatsServer, db_url: str, admin_token: str, tmp_path: Path
) -> AsyncIterator[Env]:
    hub = ServiceProcess(
        "hubfsm",
        nats_server.url,
        db_url,
        tmp_path / "hubfsm.log",
        env={
            "AGENTCOM_HUB_DATA_DIR": str(tmp_path / "hub"),
            "AGENTCOM_HUB_GOAL_SWEEP": "200ms",
            "AGENTCOM_HUB_LLM_BACKOFF": "100ms",
        },
    )
    await asyncio.to_thread(hub.start)
    try:
        yield {
            "AGENTCOM_TOKEN": admin_token,
            "AGENTCOM_PORT_OFFSET": hub.env["AGENTCOM_PORT_OFFSET"],
            "AGENTCOM_HOME": str(tmp_path / "home"),
            "COLUMNS": "60",  # a narrow terminal: ids must still come out whole
        }
    finally:
        await asyncio.to_thread(hub.stop)


async def agentcom(env: Env, *args: str, stdin: str | None = None) -> Result:
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, cli, list(args), input=stdin, env=env)


def add_args(title: str, *extra: str) -> list[str]:
    return [
        "goal",
        "add",
        title,
        "--criterion",
        "GET /healthz answers 200",
        "--criterion",
        "a test covers it",
        "--repo",
        "/srv/git/nowhere.git",
        *extra,
    ]


async def test_add_list_show_cancel_and_a_refused_retry(hub_process: Env) -> None:
    env = hub_process
    made = await agentcom(
        env,
        *add_args("Add a health route", "--description", "for the load balancer"),
        "--priority",
        "high",
        "--budget-tokens",
        "50000",
        "--budget-usd",
        "2.5",
        "--review-plan",
        "--client-key",
        "cli-1",
        "--json",
    )
    assert made.exit_code == 0, made.output
    goal = json.loads(made.output)
    assert goal["success_criteria"] == ["GET /healthz answers 200", "a test covers it"]
    assert (goal["source"], goal["autonomy"], goal["priority"]) == ("cli", "review_plan", "high")
    assert (goal["budget_tokens"], goal["budget_usd"]) == (50000, 2.5)
    assert goal["description"] == "for the load balancer"

    again = await agentcom(env, *add_args("another title"), "--client-key", "cli-1")
    assert again.exit_code == 0, again.output
    assert again.output.split()[0] == goal["id"]  # the plain line starts with the id
    other = await agentcom(env, *add_args("Second goal"))
    other_id = other.output.split()[0]
    assert other_id.startswith("goal-")
    assert other_id != goal["id"]

    listed = await agentcom(env, "goal", "list")
    assert listed.exit_code == 0, listed.output
    assert goal["id"] in listed.output  # whole, in 60 columns
    assert other_id in listed.output
    listed_json = json.loads((await agentcom(env, "goal", "list", "--json")).output)
    assert [g["id"] for g in listed_json] == [other_id, goal["id"]]
    limited = json.loads((await agentcom(env, "goal", "list", "--limit", "1", "--json")).output)
    assert [g["id"] for g in limited] == [other_id]

    shown = await agentcom(env, "goal", "show", goal["id"])
    assert shown.exit_code == 0, shown.output
    for part in ("1. GET /healthz answers 200", "2. a test covers it", "plan: none yet"):
        assert part in shown.output
    assert "budget 50000 tokens, $2.50" in shown.output
    assert "-> submitted" in shown.output
    assert "verifications: none yet" in shown.output

    refused = await agentcom(env, "goal", "cancel", goal["id"], stdin="n\n")
    assert refused.exit_code == 1
    cancelled = await agentcom(env, "goal", "cancel", goal["id"], "--yes", "--reason", "not now")
    assert cancelled.exit_code == 0, cancelled.output
    assert cancelled.output.split() == [goal["id"], "cancelled", "not", "now"]
    only = json.loads(
        (await agentcom(env, "goal", "list", "--state", "cancelled", "--json")).output
    )
    assert [g["id"] for g in only] == [goal["id"]]
    shown_json = json.loads((await agentcom(env, "goal", "show", goal["id"], "--json")).output)
    assert shown_json["history"][-1]["reason"] == "not now"

    no_retry = await agentcom(env, "goal", "retry", goal["id"])
    assert no_retry.exit_code == 1
    assert no_retry.output.startswith("error: transition_refused: ")
    assert "is cancelled" in no_retry.output


def one_error_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: "), result.output
    return lines[0]


async def test_bad_input_is_one_error_line(hub_process: Env) -> None:
    env = hub_process
    no_criterion = await agentcom(env, "goal", "add", "x", "--repo", "/srv/git/a")
    assert "--criterion" in one_error_line(no_criterion)
    no_repo = await agentcom(env, "goal", "add", "x", "--criterion", "c")
    assert "--repo" in one_error_line(no_repo)
    bad_lane = await agentcom(env, *add_args("x", "--priority", "soon"))
    assert one_error_line(bad_lane).startswith("error: invalid_field: priority")
    for command in ("show", "cancel", "retry", "watch"):
        extra = ["--yes"] if command == "cancel" else []
        bad_id = await agentcom(env, "goal", command, "nonsense", *extra)
        assert "goal-[0-9a-f]{16}" in one_error_line(bad_id), command  # brackets and all
    unknown = await agentcom(env, "goal", "show", "goal-0000000000000000")
    assert "goal_not_found" in one_error_line(unknown)
    no_reason = await agentcom(env, "goal", "reject", "goal-0000000000000000")
    assert "--reason" in one_error_line(no_reason)
    bad_plan = await agentcom(env, "goal", "approve", "goal-0000000000000000", "--plan", "/no/f")
    assert "--plan /no/f" in one_error_line(bad_plan)
    assert json.loads((await agentcom(env, "goal", "list", "--json")).output) == []  # none made


async def start_watch(env: Env, goal_id: str) -> tuple[asyncio.subprocess.Process, list[str]]:
    """`agentcom goal watch` as a process, once it has printed the goal's move into planning
    (it is live: what it prints next, it saw happen); its output so far."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCOM_")}
    watcher = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "agentcom_cli", "goal", "watch", goal_id, "--interval", "0.2"),
        env=base | env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert watcher.stdout is not None
    seen: list[str] = []
    async with asyncio.timeout(30):
        while not any("submitted -> planning" in s for s in seen):
            seen.append((await watcher.stdout.readline()).decode())
            assert seen[-1], "".join(seen)  # EOF: the watcher ended early
    return watcher, seen


async def test_watch_follows_until_another_client_cancels_and_ctrl_c_stops_it(
    hub_process: Env,
) -> None:
    env = hub_process
    goal_id = (await agentcom(env, *add_args("Watched"))).output.split()[0]
    stopped, _ = await start_watch(env, goal_id)
    watcher, seen = await start_watch(env, goal_id)
    try:
        stopped.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            interrupted, _ = await stopped.communicate()
        assert stopped.returncode == 130, interrupted.decode()
        assert interrupted.decode().splitlines()[-1] == f"stopped watching {goal_id}"
        assert "Traceback" not in interrupted.decode()

        cancelled = await agentcom(env, "goal", "cancel", goal_id, "-y", "--reason", "changed")
        assert cancelled.exit_code == 0, cancelled.output
        async with asyncio.timeout(30):
            rest, _ = await watcher.communicate()
    finally:
        for process in (stopped, watcher):
            if process.returncode is None:
                process.kill()
                await process.wait()
    printed = "".join(seen) + rest.decode()
    assert watcher.returncode == 1, printed
    assert "-> submitted" in printed
    assert "now: waiting to retry: " in printed  # no gateway runs: the goal waits, and says so
    assert "planning -> cancelled  (test admin)  changed" in printed
    assert "Traceback" not in printed
