"""One active brain per deployment: of two replicas on one database only the leader moves the
hub; when it stops or is killed, the other takes over within a few leader intervals."""

import contextlib
from collections.abc import AsyncGenerator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from agentcom_common.testing import NatsServer, ServiceProcess, eventually, running
from agentcom_hubfsm.app import create_app
from agentcom_hubfsm.settings import HubSettings

Json = dict[str, Any]
GOAL: Json = {
    "title": "Add a health route",
    "success_criteria": ["GET /healthz answers 200"],
    "repo": "https://example.invalid/repo.git",
}


@pytest.fixture
def fast(hub_settings: HubSettings) -> HubSettings:
    return hub_settings.model_copy(
        update={
            "hub_tick_interval": timedelta(milliseconds=50),
            # a leader's check times out after one interval: on two busy cores 100 ms lost
            # the lead now and then, and a takeover mid-test
            "hub_leader_interval": timedelta(milliseconds=300),
        }
    )


@contextlib.asynccontextmanager
async def replica(app: FastAPI, token: str) -> AsyncGenerator[httpx.AsyncClient]:
    async with running(app, "http://hubfsm") as client:
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


async def leader_is(api: httpx.AsyncClient, *, other_than: str | None = None) -> str:
    async def check() -> str:
        shown = (await api.get("/api/hub/state")).json()
        assert shown["leader"] is not None, shown
        assert shown["leader"] != other_than, shown
        return shown["leader"]

    return await eventually(check, timeout=20)


async def in_state(api: httpx.AsyncClient, expected: str) -> None:
    async def check() -> None:
        assert (await api.get("/api/hub/state")).json()["state"] == expected

    await eventually(check, timeout=20)


async def actors(api: httpx.AsyncClient) -> list[str]:
    page = (await api.get("/api/hub/history", params={"limit": 500})).json()
    return [m["actor"] for m in reversed(page["moves"])][1:]  # without the migration's row


async def test_only_the_leader_moves_the_hub_and_the_other_takes_over(
    fast: HubSettings, admin_token: str
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        a = await stack.enter_async_context(replica(create_app(fast), admin_token))
        first = await leader_is(a)
        async with replica(create_app(fast), admin_token) as b:
            for _ in range(2):  # both replicas answer; the moves are all the first one's
                goal = (await b.post("/api/goals", json=GOAL)).json()
                await in_state(a, "executing")
                await b.post(f"/api/goals/{goal['id']}/cancel")
                await in_state(b, "resting")
            assert await actors(a) == [f"brain:{first}"] * 4
            assert await leader_is(b) == first

            await stack.aclose()  # the leader stops; the lock goes with its session
            second = await leader_is(b, other_than=first)
            await b.post("/api/goals", json=GOAL)
            await in_state(b, "executing")
            assert (await actors(b))[-1] == f"brain:{second}"


@pytest.mark.system
async def test_a_killed_leader_is_replaced(
    nats_server: NatsServer, db_url: str, admin_token: str, tmp_path: Path
) -> None:
    env = {
        "AGENTCOM_ADMIN_TOKEN": admin_token,
        "AGENTCOM_HUB_TICK_INTERVAL": "100ms",
        "AGENTCOM_HUB_LEADER_INTERVAL": "300ms",
    }
    one, two = (
        ServiceProcess("hubfsm", nats_server.url, db_url, tmp_path / f"hub{n}.log", env)
        for n in (1, 2)
    )
    headers = {"Authorization": f"Bearer {admin_token}"}
    try:
        one.start()
        async with httpx.AsyncClient(base_url=one.url, headers=headers) as api:
            first = await leader_is(api)
        two.start()
        assert one.process is not None
        assert two.process is not None
        assert f":{one.process.pid}:" in first
        async with httpx.AsyncClient(base_url=two.url, headers=headers) as api:
            goal = (await api.post("/api/goals", json=GOAL)).json()
            await in_state(api, "executing")
            assert await actors(api) == [f"brain:{first}"]

            one.kill()  # no shutdown code: the lock goes when Postgres sees the socket close
            second = await leader_is(api, other_than=first)
            assert f":{two.process.pid}:" in second
            await api.post(f"/api/goals/{goal['id']}/cancel")
            await in_state(api, "resting")
            assert await actors(api) == [f"brain:{first}", f"brain:{second}"]
    finally:
        for process in (one, two):
            process.stop()
