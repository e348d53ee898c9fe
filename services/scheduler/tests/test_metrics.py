"""The scheduler's instruments, read back from its `/metrics` as Prometheus would scrape them."""

import json
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from nats.js import JetStreamContext

from agentcom_common.settings import CommonSettings
from agentcom_common.testing import eventually, metric, running
from agentcom_scheduler.app import create_app
from agentcom_scheduler.settings import SchedulerSettings

pytestmark = pytest.mark.usefixtures("meters")


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


async def say(js: JetStreamContext, agent: str, kind: str) -> None:
    body = {"kind": kind, "agent_id": agent}
    await js.publish(f"agentcom.agent.{agent}.report", json.dumps(body).encode())


async def test_agent_presence_is_sampled_and_silence_is_counted(
    api: httpx.AsyncClient, js: JetStreamContext
) -> None:
    before = (await api.get("/metrics")).text
    made = (await api.post("/api/agents", json={"name": "m1"})).json()
    await say(js, made["id"], "hello")

    async def online() -> None:
        await say(js, made["id"], "heartbeat")  # keep it online while the sampler runs
        text = (await api.get("/metrics")).text
        assert metric(text, "agentcom_agents", state="idle") >= 1
        assert metric(text, "agentcom_agent_online_time_seconds_total", agent=made["id"]) > 0
        assert metric(text, "agentcom_agent_utilization_ratio", agent="fleet") == 0

    await eventually(online, timeout=10)

    async def silenced() -> str:
        text = (await api.get("/metrics")).text
        assert metric(text, "agentcom_agents", state="offline") >= 1
        assert metric(text, "agentcom_agents_silent_total") > metric(
            before, "agentcom_agents_silent_total"
        )
        return text

    text = await eventually(silenced, timeout=10)
    # a delta: the counter is per process and keyed by agent id, and an earlier test of the
    # same process may have had a busy agent of this name
    busy = "agentcom_agent_busy_time_seconds_total"
    assert metric(text, busy, agent=made["id"]) - metric(before, busy, agent=made["id"]) == 0
    assert "# TYPE agentcom_reports_lag_seconds gauge" in text
