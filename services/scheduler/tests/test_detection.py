"""Presence counts from heartbeats, and silence is judged when it happens, not on a tick;
an agent that becomes idle wakes matching in-process (no periodic pass needed)."""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from pydantic import ValidationError

from agentcom_common.settings import CommonSettings
from agentcom_common.testing import eventually, running
from agentcom_queue.app import create_app as queue_app
from agentcom_scheduler.app import create_app
from agentcom_scheduler.settings import SchedulerSettings

NEVER = timedelta(hours=1)  # the periodic sweep and matching pass never come during a test


def fast(settings: CommonSettings, **extra: Any) -> SchedulerSettings:
    return SchedulerSettings.model_validate(
        settings.model_dump()
        | {
            "scheduler_heartbeat_interval": timedelta(milliseconds=100),
            "scheduler_missed_heartbeats": 3,
            "scheduler_sweep_interval": NEVER,
            "scheduler_rate_normal": 100_000,  # every report below is applied, none dropped
        }
        | extra
    )


@pytest.fixture
async def api(settings: CommonSettings, admin_token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with running(create_app(fast(settings)), "http://scheduler") as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        yield client


async def say(js: JetStreamContext, agent: str, body: dict[str, Any]) -> None:
    payload = json.dumps(body | {"agent_id": agent}).encode()
    await js.publish(f"agentcom.agent.{agent}.report", payload)


async def state(api: httpx.AsyncClient, agent: str) -> str:
    return (await api.get(f"/api/agents/{agent}")).json()["state"]


async def test_silence_is_judged_when_it_happens_without_a_sweep_tick(
    api: httpx.AsyncClient, js: JetStreamContext
) -> None:
    await api.post("/api/agents", json={"name": "d1"})
    await say(js, "d1", {"kind": "hello"})

    async def idle() -> None:
        assert await state(api, "d1") == "idle"

    await eventually(idle)

    async def offline() -> None:
        assert await state(api, "d1") == "offline"

    await eventually(offline)  # the sweep interval is an hour: it ran at d1's deadline


async def test_reports_other_than_heartbeats_do_not_keep_an_agent_online(
    api: httpx.AsyncClient, js: JetStreamContext
) -> None:
    await api.post("/api/agents", json={"name": "d2"})
    await say(js, "d2", {"kind": "hello"})

    async def idle() -> None:
        assert await state(api, "d2") == "idle"

    await eventually(idle)
    seen = ""
    for _ in range(200):  # a report every 50 ms, none a heartbeat, for up to 10 s
        await say(js, "d2", {"kind": "restarting"})
        await asyncio.sleep(0.05)  # the reports' rhythm, not a wait for a condition
        if (seen := await state(api, "d2")) == "offline":
            break
    assert seen == "offline"
    view = (await api.get("/api/agents/d2")).json()
    assert view["last_seen"] is not None  # they were applied: heard from, yet silent


async def test_an_agent_that_becomes_idle_gets_the_waiting_task_at_once(
    settings: CommonSettings, admin_token: str, nc: Client, js: JetStreamContext
) -> None:
    slow = fast(settings, scheduler_heartbeat_interval=timedelta(seconds=30))
    async with (
        running(queue_app(settings), "http://queue") as queue,
        running(create_app(slow), "http://scheduler") as api,
    ):
        for client in (queue, api):
            client.headers["Authorization"] = f"Bearer {admin_token}"
        assigned: list[dict[str, Any]] = []

        async def on_inbox(msg: Msg) -> None:
            body = json.loads(msg.data)
            if body.get("kind") == "assign":
                assigned.append(body)

        submitted: set[str] = set()

        async def on_submitted(msg: Msg) -> None:
            submitted.add(json.loads(msg.data)["task_id"])

        await nc.subscribe("agentcom.agent.w1.inbox", cb=on_inbox)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
        await nc.subscribe("agentcom.evt.task.submitted", cb=on_submitted)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
        await api.post("/api/agents", json={"name": "w1"})
        await say(js, "w1", {"kind": "hello"})

        async def idle() -> None:
            assert await state(api, "w1") == "idle"

        await eventually(idle)
        first = (await queue.post("/api/tasks", json={"description": "first"})).json()

        async def got(count: int) -> None:
            assert len(assigned) == count

        await eventually(lambda: got(1))
        assert assigned[0]["task"]["id"] == first["id"]
        second = (await queue.post("/api/tasks", json={"description": "second"})).json()

        async def heard() -> None:  # its wake-up came and went while w1 was busy
            assert second["id"] in submitted

        await eventually(heard)
        ids = {"task_id": first["id"], "generation": assigned[0]["generation"]}
        await say(js, "w1", ids | {"kind": "accepted"})
        await say(js, "w1", ids | {"kind": "completed", "result": {}})

        # no task event follows the completion, and no periodic pass comes within the hour:
        # only w1 becoming idle can wake matching
        await eventually(lambda: got(2))
        assert assigned[1]["task"]["id"] == second["id"]


def test_one_missed_heartbeat_is_refused_as_a_setting() -> None:
    # the early offline decision would fall before a live agent's next heartbeat
    with pytest.raises(ValidationError, match="scheduler_missed_heartbeats"):
        SchedulerSettings(scheduler_missed_heartbeats=1)
