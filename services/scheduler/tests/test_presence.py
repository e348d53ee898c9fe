import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from nats.js import JetStreamContext

from agentcom_common.settings import CommonSettings
from agentcom_common.testing import eventually, running
from agentcom_scheduler.app import create_app
from agentcom_scheduler.settings import SchedulerSettings


@pytest.fixture
async def api(settings: CommonSettings, admin_token: str) -> AsyncIterator[httpx.AsyncClient]:
    fast = SchedulerSettings.model_validate(
        settings.model_dump()
        | {
            "scheduler_heartbeat_interval": timedelta(milliseconds=100),
            "scheduler_missed_heartbeats": 3,
            "scheduler_sweep_interval": timedelta(milliseconds=20),
        }
    )
    async with running(create_app(fast), "http://scheduler") as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        yield client


async def say(js: JetStreamContext, agent: str, kind: str, named: str | None = None) -> None:
    body = {"kind": kind, "agent_id": named or agent}
    await js.publish(f"agentcom.agent.{agent}.report", json.dumps(body).encode())


async def state(api: httpx.AsyncClient, agent: str) -> str:
    return (await api.get(f"/api/agents/{agent}")).json()["state"]


async def test_hello_brings_an_agent_online_and_silence_takes_it_offline(
    api: httpx.AsyncClient, js: JetStreamContext
) -> None:
    await api.post("/api/agents", json={"name": "a1"})
    await say(js, "a1", "hello")

    async def idle() -> None:
        assert await state(api, "a1") == "idle"

    await eventually(idle)

    async def offline() -> None:
        assert await state(api, "a1") == "offline"

    await eventually(offline)  # no heartbeats follow: 3 x 100 ms of silence
    reasons = [h["reason"] for h in (await api.get("/api/agents/a1/history")).json()]
    assert reasons == ["registered", "hello", "missed heartbeats"]


async def test_heartbeats_keep_an_agent_online(
    api: httpx.AsyncClient, js: JetStreamContext
) -> None:
    await api.post("/api/agents", json={"name": "a2"})
    await say(js, "a2", "hello")
    await eventually(lambda: _is(api, "a2", "idle"))
    for _ in range(15):  # a sidecar's rhythm: 15 beats 50 ms apart span 2.5 offline thresholds
        await say(js, "a2", "heartbeat")
        await asyncio.sleep(0.05)  # the heartbeat interval itself, not a wait for a condition
        assert await state(api, "a2") == "idle"


async def _is(api: httpx.AsyncClient, agent: str, expected: str) -> None:
    assert await state(api, agent) == expected


async def test_a_report_naming_another_agent_changes_nothing(
    api: httpx.AsyncClient, js: JetStreamContext
) -> None:
    await api.post("/api/agents", json={"name": "victim"})
    await api.post("/api/agents", json={"name": "mallory"})
    await say(js, "mallory", "hello", named="victim")
    await say(js, "mallory", "hello")

    async def mallory_online() -> None:
        assert await state(api, "mallory") == "idle"

    await eventually(mallory_online)  # reports are handled in order: the forged one came first
    assert await state(api, "victim") == "offline"
