"""`agentcom.rpc.scheduler.agents` and `.restart`: what the hub's health assessment and healing
ask of the fleet."""

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from agentcom_common import micro, subjects
from agentcom_common.contracts.agent import AgentList, AgentView, ListAgents, RestartAgent
from agentcom_common.errors import ConflictError, NotFoundError
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import eventually, running
from agentcom_scheduler.app import create_app


@pytest.fixture
async def api(settings: CommonSettings, admin_token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with running(create_app(settings), "http://scheduler") as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        yield client


async def test_agents_lists_the_fleet_and_restart_reaches_a_supervised_sidecar(
    api: httpx.AsyncClient, nc: Client, js: JetStreamContext
) -> None:
    for name in ("a1", "a2"):
        assert (await api.post("/api/agents", json={"name": name})).status_code == 201
    fleet = await micro.call(nc, "scheduler", "agents", ListAgents(), AgentList)
    assert sorted(a.id for a in fleet.agents) == ["a1", "a2"]

    inbox = await js.pull_subscribe_bind(subjects.agent_consumer("a1"), subjects.INBOX_STREAM)
    await micro.call(nc, "scheduler", "restart", RestartAgent(agent_id="a1"), AgentView)
    got = await inbox.fetch(1, timeout=5)
    assert json.loads(got[0].data)["kind"] == "restart"

    with pytest.raises(NotFoundError):
        await micro.call(nc, "scheduler", "restart", RestartAgent(agent_id="nobody"), AgentView)


async def test_restart_of_an_unsupervised_sidecar_is_refused(
    api: httpx.AsyncClient, nc: Client, js: JetStreamContext
) -> None:
    assert (await api.post("/api/agents", json={"name": "a1"})).status_code == 201
    hello = {"kind": "hello", "agent_id": "a1", "state": "idle", "supervisor": "none"}
    await js.publish(subjects.agent_report("a1"), json.dumps(hello).encode())

    async def said_hello() -> None:
        assert (await api.get("/api/agents/a1")).json()["supervisor"] == "none"

    await eventually(said_hello)
    with pytest.raises(ConflictError) as refused:
        await micro.call(nc, "scheduler", "restart", RestartAgent(agent_id="a1"), AgentView)
    assert refused.value.code == "not_supervised"
