"""Ten agents on one machine, each with its own state dir and workspaces, do not interfere."""

import contextlib
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agentcom_common.testing import eventually
from agentcom_sidecar.journal import Journal

AGENTS = 10


@pytest.fixture
def hub_timers(hub_timers: dict[str, timedelta | int]) -> dict[str, timedelta | int]:
    """Ten sidecars share this test's one event loop (and two cores with the hub): under CI
    load a loop stall long enough to miss an agent's acceptance or heartbeats makes the hub
    take a task back (correctly) and the test about isolation fail on timing. Silence and
    acceptance are tested elsewhere; here they get a minute."""
    return hub_timers | {
        "scheduler_missed_heartbeats": 60,
        "scheduler_accept_timeout": timedelta(seconds=60),
    }


async def test_ten_agents_with_their_own_state_dirs_each_do_one_task_once(
    hub: Any, run_sidecar: Any, origin: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    configs = [
        await hub.agent(f"a{i}", allow_hub_commands=True, repos=[{"url": str(origin)}])
        for i in range(AGENTS)
    ]
    # every task waits for the same barrier, so all ten run at once, one per agent; polled
    # slowly: ten loops forking `sleep` 20 times a second starved these ten in-process sidecars
    # on two cores until the scheduler judged them silent (CI saw tasks handed back)
    command = [
        "sh",
        "-c",
        f'while [ ! -e "{go}" ]; do sleep 0.5; done; echo "$AGENTCOM_TASK_FILE" > out.txt',
    ]
    async with contextlib.AsyncExitStack() as stack:
        for config in configs:
            await stack.enter_async_context(run_sidecar(config))
        made = [
            await hub.submit(
                description=f"job {n}", repo=str(origin), metadata={"command": command}
            )
            for n in range(AGENTS)
        ]

        async def all_working() -> None:
            states = [(await hub.task(m["id"]))["state"] for m in made]
            assert states == ["working"] * AGENTS

        await eventually(all_working, timeout=120)
        go.touch()

        async def all_completed() -> list[dict[str, Any]]:
            tasks = [await hub.task(m["id"]) for m in made]
            assert [t["state"] for t in tasks] == ["completed"] * AGENTS
            return tasks

        tasks = await eventually(all_completed, timeout=120)

    assert len({t["assigned_to"] for t in tasks}) == AGENTS
    assert len({c.state for c in configs}) == AGENTS
    branches = set(_git(origin, "branch", "--format=%(refname:short)").split())
    for task in tasks:
        agent = task["assigned_to"]
        assert task["result"]["branch"] in branches
        assert task["result"]["branch"].startswith(f"agentcom/{agent}/{task['id']}-job-")
        assert _git(origin, "show", f"{task['result']['branch']}:out.txt").startswith(
            str(tmp_path / "agents" / agent / f"{agent}-workspaces" / "task-files")
        )
    for config in configs:
        journal = Journal(config.journal_path)
        mine = [t["id"] for t in tasks if t["assigned_to"] == config.agent_id]
        outcomes = [(task_id, kind) for task_id, _, kind in journal.outcomes()]
        if outcomes != [(mine[0], "completed")]:  # say why the hub moved each task
            moves = {t["id"]: await hub.history(t["id"]) for t in tasks}
            raise AssertionError(f"{config.agent_id}: {outcomes} != {mine}; history {moves}")
        journal.close()
    for task in tasks:
        assert len([h for h in await hub.history(task["id"]) if h["to_state"] == "completed"]) == 1


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout
