"""Smoke test (phase 5) with the real sidecar: two agents, each `agentcom sidecar run --config F`
in its own process with its own NATS user (the config `agentcom agent add` writes), own state
dir and workspaces, do 20 shell tasks end to end on a local bare git remote (workspace, command,
verification, commit, push); then one is killed (-9) mid-task and its task completes on the
other. Nothing is lost and nothing completes twice, judged by the queue's task history.
"""

from pathlib import Path
from typing import Any

import httpx
import pytest

from agentcom_common.testing import NatsServer, eventually

Hub = tuple[httpx.AsyncClient, httpx.AsyncClient]


Json = dict[str, Any]


async def history(queue: httpx.AsyncClient, task_id: str) -> list[Json]:
    return (await queue.get(f"/api/tasks/{task_id}/history")).json()


def task_body(origin: Path, n: int, command: list[str]) -> Json:
    """A shell task on the remote, checked by the file its command writes."""
    return {
        "description": f"smoke {n}",
        "repo": str(origin),
        "metadata": {"command": command},
        "verification_steps": [{"type": "file_exists", "path": f"out-{n}.txt"}],
    }


async def submit(queue: httpx.AsyncClient, body: Json) -> str:
    made = await queue.post("/api/tasks", json=body)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


async def completed(queue: httpx.AsyncClient, ids: list[str], timeout: float) -> list[Json]:
    async def check() -> list[Json]:
        tasks = [(await queue.get(f"/api/tasks/{t}")).json() for t in ids]
        for task in tasks:
            assert task["state"] == "completed", task
        return tasks

    return await eventually(check, timeout=timeout)


async def start_agents(hub: Hub, sidecars: Any, nats: NatsServer, origin: Path) -> None:
    """Register left and right as `agentcom agent add` does and start their sidecars."""
    _, scheduler = hub
    for name in ("left", "right"):
        made = (await scheduler.post("/api/agents", json={"name": name})).json()
        assert made["nats_user"], made  # its own NATS login, not the hub's
        config = sidecars.config(
            made,
            nats.address,
            allow_hub_commands=True,
            repos=[{"url": str(origin)}],
        )  # the default isolation: each command runs in the sandbox where the machine allows
        sidecars.start(name, config)

    async def both_idle() -> None:
        states = [a["state"] for a in (await scheduler.get("/api/agents")).json()]
        assert states == ["idle", "idle"], [sidecars.log("left"), sidecars.log("right")]

    await eventually(both_idle, timeout=30)


@pytest.mark.timeout(300)  # 21 sandboxed tasks on two real sidecars: slow on a loaded CI machine
async def test_two_real_sidecars_do_twenty_tasks_and_a_killed_agents_task_finishes_on_the_other(
    hub: Hub, sidecars: Any, repos: Any, nats_server: NatsServer, tmp_path: Path
) -> None:
    queue, scheduler = hub
    origin: Path = repos.origin(tmp_path, {"README.md": "hello\n"})
    await start_agents(hub, sidecars, nats_server, origin)

    ids = [
        await submit(queue, task_body(origin, n, ["sh", "-c", f"echo {n} > out-{n}.txt"]))
        for n in range(20)
    ]
    done = await completed(queue, ids, timeout=90)
    assert {t["assigned_to"] for t in done} == {"left", "right"}  # both took part
    for n, task in enumerate(done):
        assert task["result"]["verified"] is True, task
        branch = task["result"]["branch"]  # pushed to the remote by the agent that did it
        assert task["assigned_to"] in branch
        assert repos.git("show", f"{branch}:out-{n}.txt", cwd=origin) == f"{n}\n"

    # a task whose command blocks until the test lets it go (a file appears; the sandbox can
    # read outside its workspace, not write there)
    release = tmp_path / "release"
    blocker = (
        f'i=0; while [ ! -e "{release}" ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; '
        f'[ -e "{release}" ] && echo released > out-20.txt'
    )
    slow = await submit(queue, task_body(origin, 20, ["sh", "-c", blocker]))

    async def held(by: str | None, started: int) -> str:
        task = (await queue.get(f"/api/tasks/{slow}")).json()
        assert task["state"] == "working", task
        assert by in (None, task["assigned_to"]), task
        # the sidecars that journaled its command as started (a killed one's row stays)
        ran = [name for name in ("left", "right") if sidecars.running(name, slow)]
        assert len(ran) == started, ("its command has not started yet", ran)
        return str(task["assigned_to"])

    victim = await eventually(lambda: held(None, 1), timeout=30)
    survivor = ({"left", "right"} - {victim}).pop()
    sidecars.kill(victim)  # SIGKILL mid-task: no outcome from it

    await eventually(lambda: held(survivor, 2), timeout=60)  # taken back and handed over
    release.touch()

    task = (await completed(queue, [slow], timeout=60))[0]
    assert task["assigned_to"] == survivor
    assert task["generation"] > 1, task  # the victim's attempt was taken back, not completed
    assert task["result"]["verified"] is True, task
    assert survivor in task["result"]["branch"]
    assert repos.git("show", f"{task['result']['branch']}:out-20.txt", cwd=origin) == "released\n"

    # nothing lost, nothing twice: one completion per task in the queue's history
    for task_id in [*ids, slow]:
        completions = [h for h in await history(queue, task_id) if h["to_state"] == "completed"]
        assert len(completions) == 1, (task_id, completions)
    worked = [h for h in await history(queue, slow) if h["to_state"] == "working"]
    assert len(worked) == 2  # once on the victim, once on the survivor
    stats = (await queue.get("/api/tasks/stats")).json()["by_state"]
    assert {k: v for k, v in stats.items() if v} == {"completed": 21}, stats

    async def victim_offline() -> None:
        view = (await scheduler.get(f"/api/agents/{victim}")).json()
        assert view["state"] == "offline", view

    await eventually(victim_offline, timeout=30)
    for name in ("left", "right"):
        assert "agc_" not in sidecars.log(name)  # the token is never logged
