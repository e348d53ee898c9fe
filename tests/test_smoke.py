"""Smoke test (phase 5) with the real sidecar: two agents, each `agentcom sidecar run --config F`
in its own process with its own NATS user (the config `agentcom agent add` writes), own state
dir and workspaces, do 20 shell tasks end to end on a local bare git remote (workspace, command,
verification, commit, push); then one is killed (-9) mid-task and its task completes on the
other. Nothing is lost and nothing completes twice, judged by the queue's task history.
"""

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentcom_common.settings import CommonSettings
from agentcom_common.testing import NatsServer, eventually, running
from agentcom_queue.app import create_app as queue_app
from agentcom_scheduler.app import create_app as scheduler_app
from agentcom_scheduler.settings import SchedulerSettings

from .conftest import git, make_origin

Hub = tuple[httpx.AsyncClient, httpx.AsyncClient]


@pytest.fixture
async def hub(
    settings: CommonSettings, nats_server: NatsServer, admin_token: str
) -> AsyncIterator[Hub]:
    fast = SchedulerSettings.model_validate(
        settings.model_dump()
        | {
            "scheduler_nats_issuer_seed": nats_server.auth.issuer_seed,
            "scheduler_sweep_interval": timedelta(milliseconds=100),
            "scheduler_heartbeat_interval": timedelta(milliseconds=300),
            "scheduler_missed_heartbeats": 6,
            "scheduler_accept_timeout": timedelta(seconds=20),
        }
    )
    async with (
        running(queue_app(settings), "http://queue") as queue,
        running(scheduler_app(fast), "http://scheduler") as scheduler,
    ):
        for client in (queue, scheduler):
            client.headers["Authorization"] = f"Bearer {admin_token}"
        yield queue, scheduler


async def history(queue: httpx.AsyncClient, task_id: str) -> list[dict[str, Any]]:
    return (await queue.get(f"/api/tasks/{task_id}/history")).json()


async def test_two_real_sidecars_do_twenty_tasks_and_a_killed_agents_task_finishes_on_the_other(
    hub: Hub, sidecars: Any, nats_server: NatsServer, tmp_path: Path
) -> None:
    queue, scheduler = hub
    origin = make_origin(tmp_path, {"README.md": "hello\n"})
    for name in ("left", "right"):
        made = (await scheduler.post("/api/agents", json={"name": name})).json()
        assert made["nats_user"], made
        config = sidecars.config(
            made, nats_server.address, allow_hub_commands=True, repos=[{"url": str(origin)}]
        )
        sidecars.start(name, config)

    async def both_idle() -> None:
        states = [a["state"] for a in (await scheduler.get("/api/agents")).json()]
        assert states == ["idle", "idle"], [sidecars.log("left"), sidecars.log("right")]

    await eventually(both_idle, timeout=30)

    def task_body(n: int, command: list[str]) -> dict[str, Any]:
        return {
            "description": f"smoke {n}",
            "repo": str(origin),
            "metadata": {"command": command},
            "verification_steps": [{"type": "file_exists", "path": f"out-{n}.txt"}],
        }

    ids: list[str] = []
    for n in range(20):
        body = task_body(n, ["sh", "-c", f"echo {n} > out-{n}.txt"])
        made = await queue.post("/api/tasks", json=body)
        assert made.status_code == 201, made.text
        ids.append(made.json()["id"])

    async def all_done() -> list[dict[str, Any]]:
        tasks = [(await queue.get(f"/api/tasks/{t}")).json() for t in ids]
        for task in tasks:
            assert task["state"] == "completed", task
        return tasks

    done = await eventually(all_done, timeout=90)
    assert {t["assigned_to"] for t in done} == {"left", "right"}  # both took part
    for n, task in enumerate(done):
        assert task["result"]["verified"] is True, task
        branch = task["result"]["branch"]  # pushed to the remote by the agent that did it
        assert git("show", f"{branch}:out-{n}.txt", cwd=origin) == f"{n}\n"

    # a task whose command blocks until the test lets it go (a file appears)
    gate = tmp_path / "gate"
    gate.mkdir()
    release = gate / "release"
    blocker = (
        f'touch "{gate}/started-$$"; i=0; '
        f'while [ ! -e "{release}" ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; '
        f'[ -e "{release}" ] && echo released > out-20.txt'
    )
    slow = (await queue.post("/api/tasks", json=task_body(20, ["sh", "-c", blocker]))).json()["id"]

    async def held() -> str:
        task = (await queue.get(f"/api/tasks/{slow}")).json()
        assert task["state"] == "working", task
        assert list(gate.glob("started-*")), "the command has not started yet"
        return str(task["assigned_to"])

    victim = await eventually(held, timeout=30)
    survivor = ({"left", "right"} - {victim}).pop()
    sidecars.kill(victim)

    async def taken_over() -> None:
        task = (await queue.get(f"/api/tasks/{slow}")).json()
        assert task["assigned_to"] == survivor, task
        assert task["state"] == "working", task
        assert len(list(gate.glob("started-*"))) == 2, "the survivor's command has not started"

    await eventually(taken_over, timeout=60)
    release.touch()

    async def finished_elsewhere() -> dict[str, Any]:
        task = (await queue.get(f"/api/tasks/{slow}")).json()
        assert task["state"] == "completed", task
        return task

    task = await eventually(finished_elsewhere, timeout=60)
    assert task["assigned_to"] == survivor
    assert task["generation"] > 1, task  # the victim's attempt was taken back, not completed
    assert task["result"]["verified"] is True, task
    assert git("show", f"{task['result']['branch']}:out-20.txt", cwd=origin) == "released\n"
    assert survivor in task["result"]["branch"]

    for task_id in [*ids, slow]:
        completions = [h for h in await history(queue, task_id) if h["to_state"] == "completed"]
        assert len(completions) == 1, (task_id, completions)
    stats = (await queue.get("/api/tasks/stats")).json()["by_state"]
    assert {k: v for k, v in stats.items() if v} == {"completed": 21}, stats

    async def victim_offline() -> None:
        view = (await scheduler.get(f"/api/agents/{victim}")).json()
        assert view["state"] == "offline", view

    await eventually(victim_offline, timeout=30)
    for name in ("left", "right"):
        log = sidecars.log(name)
        assert "agc_" not in log  # the token is never logged
