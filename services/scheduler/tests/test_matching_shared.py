"""Matching from two scheduler replicas (and two queue replicas) on one Postgres and one NATS:
the queue's claim takes tasks `SKIP LOCKED` and the agent's move is a guarded UPDATE, so no
agent is offered two tasks at once, no task goes to two agents, and every task is assigned
exactly once."""

import asyncio
import json
from collections import Counter
from datetime import timedelta

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from agentcom_common.settings import CommonSettings
from agentcom_common.testing import eventually, running
from agentcom_queue.app import create_app as queue_app
from agentcom_scheduler.app import create_app
from agentcom_scheduler.settings import SchedulerSettings

AGENTS = 20
TASKS = 60


class Fleet:
    """Simulated sidecars: accept each assignment, complete it on `start`, and note any
    assignment offered to an agent still running another."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self.holding: dict[str, tuple[str, int]] = {}  # agent -> the assignment it runs
        self.offers: list[tuple[str, str, int]] = []  # (agent, task, generation), no repeats
        self.overlaps: list[str] = []

    async def report(self, agent: str, body: dict[str, object]) -> None:
        payload = json.dumps(body | {"agent_id": agent}).encode()
        await self.js.publish(f"agentcom.agent.{agent}.report", payload)

    async def on_inbox(self, msg: Msg) -> None:
        agent = msg.subject.split(".")[2]
        body = json.loads(msg.data)
        if body["kind"] == "assign":
            key = (str(body["task"]["id"]), int(body["generation"]))
            if (agent, *key) in self.offers:  # a re-sent assignment is the same offer
                return
            self.offers.append((agent, *key))
            if agent in self.holding:
                self.overlaps.append(f"{agent} offered {key} running {self.holding[agent]}")
            self.holding[agent] = key
            await self.report(agent, {"kind": "accepted", "task_id": key[0], "generation": key[1]})
        elif body["kind"] == "start":
            key = (str(body["task_id"]), int(body["generation"]))
            if self.holding.get(agent) == key:
                del self.holding[agent]  # before the report: the next offer may follow at once
                done: dict[str, object] = {"kind": "completed", "result": {}}
                await self.report(agent, done | {"task_id": key[0], "generation": key[1]})


async def test_two_replicas_assign_every_task_once_and_never_two_to_one_agent(
    settings: CommonSettings, admin_token: str, nc: Client, js: JetStreamContext
) -> None:
    own = SchedulerSettings.model_validate(
        settings.model_dump()
        | {
            "scheduler_heartbeat_interval": timedelta(seconds=30),  # the hello lasts the test
            "scheduler_sweep_interval": timedelta(milliseconds=20),
            "scheduler_rate_normal": 100_000,
            "scheduler_rate_light": 100_000,
        }
    )
    fleet = Fleet(js)
    await nc.subscribe("agentcom.agent.*.inbox", cb=fleet.on_inbox)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
    async with (
        running(queue_app(settings), "http://queue-a") as qa,
        running(queue_app(settings), "http://queue-b") as qb,
        running(create_app(own), "http://scheduler-a") as sa,
        running(create_app(own), "http://scheduler-b") as sb,
    ):
        for client in (qa, qb, sa, sb):
            client.headers["Authorization"] = f"Bearer {admin_token}"
        names = [f"m{n}" for n in range(AGENTS)]
        for n, name in enumerate(names):
            await (sa, sb)[n % 2].post("/api/agents", json={"name": name})
            await fleet.report(name, {"kind": "hello"})

        async def all_idle() -> None:
            agents = (await sa.get("/api/agents")).json()
            assert sum(a["state"] == "idle" for a in agents) == AGENTS

        await eventually(all_idle)
        submitted = await asyncio.gather(
            *(
                (qa, qb)[n % 2].post("/api/tasks", json={"description": f"t{n}"})
                for n in range(TASKS)
            )
        )
        ids = {r.json()["id"] for r in submitted}
        assert len(ids) == TASKS

        async def all_completed() -> None:
            states = [(await qa.get(f"/api/tasks/{i}")).json()["state"] for i in sorted(ids)]
            assert states == ["completed"] * TASKS

        await eventually(all_completed, timeout=60)

    assert fleet.overlaps == []
    per_task = Counter(task for _, task, _ in fleet.offers)
    assert per_task == Counter(dict.fromkeys(ids, 1))  # each task offered once, to one agent
    assert len({agent for agent, _, _ in fleet.offers}) > 1  # the work was spread, not serialised
