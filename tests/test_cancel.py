"""Cancel through the real route reaches the agent (issue 14): the queue's `task.cancelled`
event is followed by the scheduler, which puts `cancel` in the agent's inbox; the real sidecar
process kills the task's process group, delivers nothing, reports `cancelled`, and the agent is
idle again and takes the next task. Also when the sidecar was away at the time of the cancel:
it reads the cancel when it is back and never starts the task."""

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentcom_common.testing import NatsServer, eventually

Hub = tuple[httpx.AsyncClient, httpx.AsyncClient]
Json = dict[str, Any]


@pytest.fixture
def hub_timers() -> dict[str, Any]:
    # a sidecar away for a while (the second test) is still online when it is back
    return {"scheduler_missed_heartbeats": 100, "scheduler_accept_timeout": timedelta(seconds=30)}


async def start_agent(
    hub: Hub, sidecars: Any, nats: NatsServer, origin: Path, **extra: Any
) -> Path:
    _, scheduler = hub
    name = "solo"
    made = (await scheduler.post("/api/agents", json={"name": name})).json()
    config: Path = sidecars.config(
        made, nats.address, allow_hub_commands=True, repos=[{"url": str(origin)}], **extra
    )
    sidecars.start(name, config)
    await agent_is(scheduler, name, "idle", sidecars)
    return config


async def agent_is(scheduler: httpx.AsyncClient, name: str, state: str, sidecars: Any) -> None:
    async def check() -> None:
        view = (await scheduler.get(f"/api/agents/{name}")).json()
        assert view["state"] == state, (view, sidecars.log(name)[-3000:])

    await eventually(check, timeout=60)


async def submit(queue: httpx.AsyncClient, origin: Path, command: list[str]) -> str:
    body = {
        "description": "cancel me",
        "repo": str(origin),
        "metadata": {"command": command},
        "verification_steps": [{"type": "file_exists", "path": "out.txt"}],
        "max_retries": 0,
    }
    made = await queue.post("/api/tasks", json=body)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


async def task(queue: httpx.AsyncClient, task_id: str) -> Json:
    return (await queue.get(f"/api/tasks/{task_id}")).json()


def group_alive(pgid: int) -> list[int]:
    """Pids of live (not zombie) processes in process group `pgid`."""
    alive: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


def remote_branches(repos: Any, origin: Path) -> str:
    return str(repos.git("ls-remote", "--heads", str(origin), cwd=origin))


async def next_task_completes(queue: httpx.AsyncClient, origin: Path, name: str) -> None:
    after = await submit(queue, origin, ["sh", "-c", "echo next > out.txt"])

    async def done() -> None:
        view = await task(queue, after)
        assert view["state"] == "completed", view
        assert view["assigned_to"] == name

    await eventually(done, timeout=30)


async def test_a_cancel_through_the_route_kills_the_process_group_delivers_nothing_and_frees_the_agent(
    hub: Hub, sidecars: Any, repos: Any, nats_server: NatsServer, tmp_path: Path
) -> None:
    queue, scheduler = hub
    origin: Path = repos.origin(tmp_path, {"README.md": "hello\n"})
    await start_agent(hub, sidecars, nats_server, origin)  # the default isolation: sandboxed
    # a change that would be pushed, then a grandchild that would sleep for five minutes
    command = ["sh", "-c", "echo work > out.txt; sleep 300 & echo up > started; wait"]
    slow = await submit(queue, origin, command)

    async def sleeping() -> int:
        assert (await task(queue, slow))["state"] == "working"
        running = sidecars.running("solo", slow)
        assert running is not None, "its command has not started yet"
        pgid, workspace = running
        assert (workspace / "started").exists(), "its sleep has not started yet"
        # the sh and its sleep, and in the sandbox also the `unshare` that started them
        assert len(group_alive(pgid)) >= 2
        return pgid

    pgid = await eventually(sleeping, timeout=30)

    cancelled = await queue.post(f"/api/tasks/{slow}/cancel")
    assert cancelled.status_code == 200, cancelled.text

    async def stopped() -> None:
        assert group_alive(pgid) == [], sidecars.log("solo")[-3000:]

    await eventually(stopped, timeout=20)
    await agent_is(scheduler, "solo", "idle", sidecars)
    await next_task_completes(queue, origin, "solo")

    assert slow not in remote_branches(repos, origin)  # nothing of it was pushed
    assert (await task(queue, slow))["state"] == "cancelled"
    history = (await scheduler.get("/api/agents/solo/history")).json()
    assert any(h["reason"] == f"cancelled {slow}" for h in history), history


async def test_a_sidecar_away_at_the_cancel_reads_it_when_back_and_never_starts_the_task(
    hub: Hub, sidecars: Any, repos: Any, nats_server: NatsServer, tmp_path: Path
) -> None:
    queue, scheduler = hub
    origin: Path = repos.origin(tmp_path, {"README.md": "hello\n"})
    # its proof is a mark outside the workspace, which the sandbox would refuse to write
    config = await start_agent(hub, sidecars, nats_server, origin, shell_isolation="none")
    sidecars.kill("solo")  # away: the scheduler still counts it online for a while
    marker = tmp_path / "ran"
    doomed = await submit(queue, origin, ["sh", "-c", f'touch "{marker}"; echo x > out.txt'])
    await agent_is(scheduler, "solo", "assigned", sidecars)  # its assign waits in the inbox
    cancelled = await queue.post(f"/api/tasks/{doomed}/cancel")
    assert cancelled.status_code == 200, cancelled.text

    sidecars.start("solo", config)  # back: the assign, then the cancel, are in its inbox
    await agent_is(scheduler, "solo", "idle", sidecars)
    await next_task_completes(queue, origin, "solo")

    assert not marker.exists()  # its command never ran
    assert doomed not in remote_branches(repos, origin)
    assert (await task(queue, doomed))["state"] == "cancelled"
