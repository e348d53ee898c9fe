"""The sweep does not call live agents silent while its own reports are still waiting, and
does not let such a backlog hide agents that are silent anyway."""

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta

import httpx
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import clock
from agentcom_common.outbox import Relay
from agentcom_common.service import AnySpec
from agentcom_common.testing import eventually
from agentcom_scheduler import ops, presence, tables
from quiet_scheduler import SPEC as QUIET_SPEC

RunService = Callable[[AnySpec], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
async def api(run_service: RunService, admin_token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with run_service(QUIET_SPEC) as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        yield client


async def test_a_report_backlog_delays_judging_only_the_agents_it_may_hide(
    api: httpx.AsyncClient, engine: AsyncEngine, nc: Client, js: JetStreamContext
) -> None:
    interval, silence = timedelta(milliseconds=100), timedelta(milliseconds=300)
    accept = timedelta(seconds=30)
    for name in ("quiet", "gone"):
        await api.post("/api/agents", json={"name": name})
    backlog = await js.pull_subscribe("agentcom.agent.*.report", durable=presence.CONSUMER)
    for _ in range(5):  # waiting for the consumer, older than quiet's last applied heartbeat
        await js.publish("agentcom.agent.quiet.report", b'{"kind":"heartbeat","agent_id":"quiet"}')
    agents = tables.agents
    async with engine.begin() as conn:  # both idle; quiet heard from just now, gone long ago
        await conn.execute(update(agents).values(state="idle", last_beat=func.now()))
        await conn.execute(
            update(agents)
            .where(agents.c.id == "gone")
            .values(last_beat=func.now() - timedelta(seconds=10))
        )
        beat = (
            await conn.execute(select(agents.c.last_beat).where(agents.c.id == "quiet"))
        ).scalar_one()
    relay = Relay(engine, js, tables.outbox_table, interval=interval, batch=100)  # not run
    s = ops.Scheduler(engine, tables.outbox_table, relay)

    async def quiet_for_longer_than_silence() -> None:
        assert clock.now() - beat > silence + interval / 2

    await eventually(quiet_for_longer_than_silence)
    # quiet's next heartbeat may be in the backlog: not judged; gone's would have come long
    # before the backlog began: judged
    assert await presence.sweep(s, nc, js, silence, accept, interval) == 1
    assert (await api.get("/api/agents/quiet")).json()["state"] == "idle"
    assert (await api.get("/api/agents/gone")).json()["state"] == "offline"

    for msg in await backlog.fetch(5, timeout=5):  # caught up, and nothing from quiet after all
        await msg.ack()
    assert await presence.sweep(s, nc, js, silence, accept, interval) == 1
    assert (await api.get("/api/agents/quiet")).json()["state"] == "offline"
