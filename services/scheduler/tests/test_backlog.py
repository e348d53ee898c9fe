"""The sweep does not call live agents silent while its own reports are still waiting."""

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta

import httpx
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common.service import ServiceSpec
from agentcom_scheduler import ops, presence, tables
from agentcom_scheduler.app import SPEC

RunService = Callable[[ServiceSpec], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
async def api(run_service: RunService, admin_token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with run_service(SPEC) as client:  # no loops: the test drives the sweep itself
        client.headers["Authorization"] = f"Bearer {admin_token}"
        yield client


async def test_silence_is_judged_only_once_the_report_backlog_is_small(
    api: httpx.AsyncClient, engine: AsyncEngine, nc: Client, js: JetStreamContext
) -> None:
    await api.post("/api/agents", json={"name": "quiet"})
    async with engine.begin() as conn:  # idle, last heard from long ago
        await conn.execute(
            update(tables.agents).where(tables.agents.c.id == "quiet").values(state="idle")
        )
    backlog = await js.pull_subscribe("agentcom.agent.*.report", durable=presence.CONSUMER)
    for _ in range(presence.BACKLOG_LIMIT + 1):
        await js.publish("agentcom.agent.quiet.report", b'{"kind":"heartbeat","agent_id":"quiet"}')
    s = ops.Scheduler(engine, tables.outbox_table)
    silence, accept = timedelta(milliseconds=1), timedelta(seconds=30)

    assert await presence.sweep(s, nc, js, silence, accept) == 0
    assert (await api.get("/api/agents/quiet")).json()["state"] == "idle"

    for msg in await backlog.fetch(presence.BACKLOG_LIMIT + 1, timeout=5):
        await msg.ack()
    assert await presence.sweep(s, nc, js, silence, accept) == 1
    assert (await api.get("/api/agents/quiet")).json()["state"] == "offline"
