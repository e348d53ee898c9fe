"""`agentcom task …` and `agentcom repo …` against a real queue process, as a user types them."""

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from agentcom_cli.main import app as cli
from agentcom_common.testing import NatsServer, ServiceProcess


@pytest.fixture
async def queue_process(
    nats_server: NatsServer, db_url: str, admin_token: str, tmp_path: Path
) -> AsyncIterator[dict[str, str]]:
    queue = ServiceProcess("queue", nats_server.url, db_url, tmp_path / "queue.log")
    await asyncio.to_thread(queue.start)
    offset = int(queue.env["AGENTCOM_PORT_OFFSET"])
    try:
        yield {
            "AGENTCOM_TOKEN": admin_token,
            "AGENTCOM_PORT_OFFSET": str(offset),
            "AGENTCOM_HOME": str(tmp_path / "home"),
            "COLUMNS": "60",  # a narrow terminal: ids must still come out whole
        }
    finally:
        await asyncio.to_thread(queue.stop)


async def agentcom(env: dict[str, str], *args: str, stdin: str | None = None) -> Result:
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, cli, list(args), input=stdin, env=env)


async def test_submit_list_show_cancel_and_watch_a_task(queue_process: dict[str, str]) -> None:
    env = queue_process
    added = await agentcom(env, "repo", "add", "/srv/git/origin.git", "--json")
    assert added.exit_code == 0, added.output
    assert [r["url"] for r in json.loads(added.output)] == ["/srv/git/origin"]

    made = await agentcom(
        env,
        "task",
        "submit",
        "make the failing test pass",
        "--command",
        "python -m pytest -q 'tests/test a.py'",
        "--check",
        "test_passes:pytest -q",
        "--check",
        "file_exists:src/fixed.py",
        "--check",
        "git_clean",
        "--lane",
        "high",
        "--json",
    )
    assert made.exit_code == 0, made.output
    task = json.loads(made.output)
    assert task["metadata"]["command"] == ["python", "-m", "pytest", "-q", "tests/test a.py"]
    assert [s["type"] for s in task["verification_steps"]] == [
        "test_passes",
        "file_exists",
        "git_clean",
    ]
    assert (task["priority"], task["repo"]) == ("high", "/srv/git/origin")

    listed = await agentcom(env, "task", "list")
    assert listed.exit_code == 0, listed.output
    assert task["id"] in listed.output  # whole, on one line, in 60 columns
    listed_json = json.loads((await agentcom(env, "task", "list", "--json")).output)
    assert [t["id"] for t in listed_json] == [task["id"]]

    shown = await agentcom(env, "task", "show", task["id"])
    assert shown.exit_code == 0, shown.output
    assert "test_passes" in shown.output
    assert "-> queued" in shown.output

    refused = await agentcom(env, "task", "cancel", task["id"], stdin="n\n")
    assert refused.exit_code == 1
    cancelled = await agentcom(env, "task", "cancel", task["id"], "--yes")
    assert cancelled.exit_code == 0, cancelled.output
    assert "cancelled" in cancelled.output

    watched = await agentcom(env, "task", "watch", task["id"])
    assert watched.exit_code == 1  # it ended, and not completed
    assert "-> cancelled" in watched.output


async def test_a_task_spec_file_and_the_flags_that_override_it(
    queue_process: dict[str, str], tmp_path: Path
) -> None:
    spec = tmp_path / "task.yaml"
    spec.write_text(
        "description: from the file\npriority: low\nmetadata:\n  command: [make, test]\n"
    )
    made = await agentcom(queue_process, "task", "submit", "--file", str(spec), "--lane", "urgent")
    assert made.exit_code == 0, made.output
    task_id = made.output.split()[0]
    task = json.loads((await agentcom(queue_process, "task", "show", task_id, "--json")).output)
    assert (task["description"], task["priority"]) == ("from the file", "urgent")
    assert task["metadata"]["command"] == ["make", "test"]


async def test_bad_input_is_one_plain_line_brackets_included(
    queue_process: dict[str, str],
) -> None:
    wrong_kind = await agentcom(queue_process, "task", "submit", "x", "--check", "lint:ruff")
    assert wrong_kind.exit_code == 1
    assert "the kind must be one of file_exists" in wrong_kind.output

    bad_dependency = await agentcom(queue_process, "task", "submit", "x", "--depends-on", "nope")
    assert bad_dependency.exit_code == 1
    assert "Traceback" not in bad_dependency.output
    assert "[0-9a-f]{16}" in bad_dependency.output  # the pattern, square brackets and all


async def test_no_token_says_which_directory_it_looked_in(tmp_path: Path) -> None:
    env = {"AGENTCOM_HOME": str(tmp_path / "elsewhere"), "AGENTCOM_TOKEN": ""}
    result = await agentcom(env, "task", "list")
    assert result.exit_code == 1
    assert "no stack in this directory" in result.output
    assert str(tmp_path / "elsewhere") in result.output


def test_the_cli_starts_without_the_database_or_nats_clients() -> None:
    """`agentcom --version` loads no SQLAlchemy, asyncpg or NATS client."""
    probe = (
        "import sys, agentcom_cli.main; "
        "print(sorted(m for m in ('sqlalchemy', 'asyncpg', 'nats', 'alembic', 'rich.table')"
        " if m in sys.modules))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert shown.stdout.strip() == "[]"


def test_task_list_json_answers_without_the_slow_imports(queue_process: dict[str, str]) -> None:
    """`task list --json` against a real queue finds the stack and prints JSON without
    pydantic-settings, SQLAlchemy, NATS, httpx or rich (each costs 0.1-0.2 s of start-up)."""
    probe = (
        "import sys\n"
        "from agentcom_cli.main import app\n"
        "try:\n    app(['task', 'list', '--json'])\n"
        "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "slow = ('pydantic_settings', 'sqlalchemy', 'asyncpg', 'nats', 'httpx', 'rich')\n"
        "print(sorted(m for m in slow if m in sys.modules), file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCOM_")}
    shown = subprocess.run(
        [sys.executable, "-c", probe],
        env=env | queue_process,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == []
    assert shown.stderr.strip() == "[]"
