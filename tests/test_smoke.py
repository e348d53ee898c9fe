"""Smoke test (phase 5): two agents in their own processes, logged in with their own NATS users,
do 20 tasks end to end; then one is killed (-9) mid-task and its task completes on the other.
Nothing is lost and nothing completes twice.

The agents are `tests/smoke_agent.py`, a small client speaking the sidecar protocol. To run the
real sidecar instead, change `agent_command` to `["agentcom", "sidecar", "run", "--config",
str(config)]` and give the tasks what its executor needs (see `task_body`).
"""

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from agentcom_common import embedded
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import NatsServer, eventually, running
from agentcom_queue.app import create_app as queue_app
from agentcom_scheduler.app import create_app as scheduler_app
from agentcom_scheduler.settings import SchedulerSettings

HEARTBEAT = 0.2
AGENT = Path(__file__).with_name("smoke_agent.py")
Hub = tuple[httpx.AsyncClient, httpx.AsyncClient]


def agent_command(config: Path) -> list[str]:
    return [sys.executable, str(AGENT), "--config", str(config), "--heartbeat", str(HEARTBEAT)]


def task_body(n: int, work_ms: int) -> dict[str, Any]:
    return {"description": f"smoke {n}", "metadata": {"work_ms": work_ms}}


@pytest.fixture
async def hub(
    settings: CommonSettings, nats_server: NatsServer, admin_token: str
) -> AsyncIterator[Hub]:
    fast = SchedulerSettings.model_validate(
        settings.model_dump()
        | {
            "scheduler_nats_issuer_seed": nats_server.auth.issuer_seed,
            "scheduler_sweep_interval": timedelta(milliseconds=50),
            "scheduler_heartbeat_interval": timedelta(seconds=HEARTBEAT),
            "scheduler_missed_heartbeats": 3,
            "scheduler_accept_timeout": timedelta(seconds=5),
        }
    )
    async with (
        running(queue_app(settings), "http://queue") as queue,
        running(scheduler_app(fast), "http://scheduler") as scheduler,
    ):
        for client in (queue, scheduler):
            client.headers["Authorization"] = f"Bearer {admin_token}"
        yield queue, scheduler


class Agents:
    """Agent processes by name; every one still running is killed at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: list[IO[bytes]] = []

    def start(self, name: str, config: dict[str, Any]) -> None:
        path = self.tmp / f"{name}.json"
        path.write_text(json.dumps(config))
        path.chmod(0o600)
        log = (self.tmp / f"{name}.log").open("wb")
        self.logs.append(log)
        self.procs[name] = subprocess.Popen(
            agent_command(path),
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=embedded.die_with_parent,
        )

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text()

    def kill(self, name: str) -> None:
        self.procs[name].kill()  # SIGKILL: no goodbye, no outcome
        self.procs[name].wait(timeout=10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        for log in self.logs:
            log.close()


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Agents]:
    made = Agents(tmp_path)
    try:
        yield made
    finally:
        made.stop_all()


async def completions(queue: httpx.AsyncClient, task_id: str) -> list[dict[str, Any]]:
    history = (await queue.get(f"/api/tasks/{task_id}/history")).json()
    return [h for h in history if h["to_state"] == "completed"]


async def test_two_agents_do_twenty_tasks_and_a_killed_agents_task_finishes_on_the_other(
    hub: Hub, agents: Agents, nats_server: NatsServer
) -> None:
    queue, scheduler = hub
    for name in ("left", "right"):
        made = (await scheduler.post("/api/agents", json={"name": name})).json()
        agents.start(
            name,
            {
                "agent_id": made["id"],
                "token": made["token"],
                "nats_url": nats_server.address,
                "nats_user": made["nats_user"],
                "nats_password": made["nats_password"],
                "hub_urls": {"scheduler": "http://scheduler", "queue": "http://queue"},
            },
        )

    async def both_idle() -> None:
        states = [a["state"] for a in (await scheduler.get("/api/agents")).json()]
        assert states == ["idle", "idle"], [agents.log("left"), agents.log("right")]

    await eventually(both_idle, timeout=30)
    ids = [(await queue.post("/api/tasks", json=task_body(n, 20))).json()["id"] for n in range(20)]

    async def all_done() -> None:
        for task_id in ids:
            task = (await queue.get(f"/api/tasks/{task_id}")).json()
            assert task["state"] == "completed", task

    await eventually(all_done, timeout=60)
    workers = {(await queue.get(f"/api/tasks/{t}")).json()["result"]["by"] for t in ids}
    assert workers == {"left", "right"}  # both took part

    slow = (await queue.post("/api/tasks", json=task_body(20, 120_000))).json()["id"]

    async def held() -> str:
        task = (await queue.get(f"/api/tasks/{slow}")).json()
        assert task["state"] == "working"
        return str(task["assigned_to"])

    victim = await eventually(held, timeout=30)
    survivor = ({"left", "right"} - {victim}).pop()
    agents.kill(victim)

    async def finished_elsewhere() -> None:
        task = (await queue.get(f"/api/tasks/{slow}")).json()
        assert task["state"] == "completed"
        assert task["result"]["by"] == survivor

    await eventually(finished_elsewhere, timeout=60)
    for task_id in [*ids, slow]:
        assert len(await completions(queue, task_id)) == 1, task_id
    assert f"completed {slow}" not in agents.log(victim)
    stats = (await queue.get("/api/tasks/stats")).json()["by_state"]
    assert stats.get("completed") == 21
    victim_view = (await scheduler.get(f"/api/agents/{victim}")).json()
    assert victim_view["state"] == "offline"
