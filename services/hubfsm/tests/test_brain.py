"""The hub brain in the running service: goals move it, the routes pause, resume, stop and
start it, the watchdog forces resting, a restart resumes where it was."""

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import auth
from agentcom_common.testing import eventually, running
from agentcom_hubfsm.app import create_app
from agentcom_hubfsm.settings import HubSettings

Json = dict[str, Any]
GOAL: Json = {
    "title": "Add a health route",
    "success_criteria": ["GET /healthz answers 200"],
    "repo": "https://example.invalid/repo.git",
}


@pytest.fixture
def brain_settings(hub_settings: HubSettings) -> HubSettings:
    fast = {
        "hub_tick_interval": timedelta(milliseconds=50),
        "hub_leader_interval": timedelta(milliseconds=200),  # it leads from 0.6 s after start
    }
    return hub_settings.model_copy(update=fast)


@pytest.fixture
async def hub(brain_settings: HubSettings, admin_token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with running(create_app(brain_settings), "http://hubfsm") as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        yield client


async def state(api: httpx.AsyncClient) -> Json:
    reply = await api.get("/api/hub/state")
    assert reply.status_code == 200, reply.text
    return reply.json()


async def wait_for(api: httpx.AsyncClient, expected: str) -> Json:
    async def check() -> Json:
        shown = await state(api)
        assert shown["state"] == expected, shown
        return shown

    return await eventually(check)


async def moves(api: httpx.AsyncClient) -> list[tuple[str | None, str, str]]:
    page = (await api.get("/api/hub/history", params={"limit": 500})).json()
    return [(m["from_state"], m["to_state"], m["reason"]) for m in reversed(page["moves"])]


async def test_a_goal_moves_the_hub_to_executing_and_back_when_it_ends(
    hub: httpx.AsyncClient, nc: Client
) -> None:
    changes = await nc.subscribe("agentcom.evt.hub.state_changed")  # pyright: ignore[reportUnknownMemberType]
    first = await state(hub)
    assert (first["state"], first["paused"], first["cycle"]) == ("resting", False, 0)
    assert first["watchdog_at"] is None

    goal = (await hub.post("/api/goals", json=GOAL)).json()
    shown = await wait_for(hub, "executing")
    assert shown["cycle"] == 1
    assert shown["reason"] == "goals_open"
    assert shown["leader"] is not None
    assert shown["goals_pending"] + shown["goals_active"] == 1
    assert shown["watchdog_at"] is not None
    event = json.loads((await changes.next_msg(timeout=10)).data)
    assert (event["state"], event["from_state"], event["reason"]) == (
        "executing",
        "resting",
        "goals_open",
    )

    await hub.post(f"/api/goals/{goal['id']}/cancel")
    shown = await wait_for(hub, "resting")
    assert shown["reason"] == "goals_done"
    assert shown["seconds_in_state"]["executing"] > 0
    assert set(shown["seconds_in_state"]) == {
        "resting",
        "executing",
        "improving",
        "contemplating",
        "healing",
    }
    assert await moves(hub) == [
        (None, "resting", "created"),
        ("resting", "executing", "goals_open"),
        ("executing", "resting", "goals_done"),
    ]
    assert json.loads((await changes.next_msg(timeout=10)).data)["state"] == "resting"


async def test_stop_forces_resting_and_pauses_and_start_lets_the_rules_run(
    hub: httpx.AsyncClient, nc: Client
) -> None:
    paused = await nc.subscribe("agentcom.evt.hub.paused")  # pyright: ignore[reportUnknownMemberType]
    await hub.post("/api/goals", json=GOAL)
    await wait_for(hub, "executing")

    stopped = await hub.post("/api/hub/stop", params={"reason": "maintenance"})
    assert stopped.status_code == 200, stopped.text
    assert (stopped.json()["state"], stopped.json()["paused"]) == ("resting", True)
    assert (await moves(hub))[-1] == ("executing", "resting", "stopped: maintenance")
    event = json.loads((await paused.next_msg(timeout=10)).data)
    assert (event["paused"], event["state"], event["actor"]) == (True, "resting", "test admin")
    again = await hub.post("/api/hub/stop")  # a stopped hub: nothing changes
    assert (again.json()["state"], again.json()["paused"]) == ("resting", True)
    assert len(await moves(hub)) == 3

    started = await hub.post("/api/hub/start")
    assert started.json()["paused"] is False
    shown = await wait_for(hub, "executing")  # the goal is still open
    assert shown["cycle"] == 2


async def test_pause_and_resume_are_idempotent_and_admin_only(
    hub: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    assert (await hub.post("/api/hub/pause")).json()["paused"] is True
    assert (await hub.post("/api/hub/pause")).json()["paused"] is True
    assert (await state(hub))["paused"] is True
    assert (await hub.post("/api/hub/resume")).json()["paused"] is False
    assert (await hub.post("/api/hub/resume")).json()["paused"] is False

    viewer = (await auth.issue(engine, auth.Role.VIEWER, "reader")).token
    as_viewer = {"Authorization": f"Bearer {viewer}"}
    assert (await hub.get("/api/hub/state", headers=as_viewer)).status_code == 200
    for verb in ("pause", "resume", "stop", "start"):
        refused = await hub.post(f"/api/hub/{verb}", headers=as_viewer)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == "forbidden"
    anonymous = await hub.get("/api/hub/state", headers={"Authorization": ""})
    assert anonymous.status_code == 401
    bad = await hub.get("/api/hub/history", params={"cursor": "x"})
    assert (bad.status_code, bad.json()["error"]) == (422, "invalid_field")
    long = await hub.post("/api/hub/pause", params={"reason": "x" * 501})
    assert (long.status_code, long.json()["error"]) == (422, "invalid_field")


async def test_history_pages_newest_first(hub: httpx.AsyncClient) -> None:
    for _ in range(3):
        await hub.post("/api/hub/stop")
        await hub.post("/api/hub/start")
    await hub.post("/api/goals", json=GOAL)
    await wait_for(hub, "executing")
    await hub.post("/api/hub/stop")
    first = (await hub.get("/api/hub/history", params={"limit": 2})).json()
    assert [m["to_state"] for m in first["moves"]] == ["resting", "executing"]
    rest = (
        await hub.get("/api/hub/history", params={"limit": 2, "cursor": first["next_cursor"]})
    ).json()
    assert [m["to_state"] for m in rest["moves"]] == ["resting"]  # the migration's first row
    assert rest["next_cursor"] is None


async def test_the_watchdog_forces_resting_even_when_paused_and_alerts(
    brain_settings: HubSettings, admin_token: str, nc: Client
) -> None:
    fired = await nc.subscribe("agentcom.evt.hub.watchdog_fired")  # pyright: ignore[reportUnknownMemberType]
    settings = brain_settings.model_copy(
        update={"hub_global_watchdog": timedelta(milliseconds=400)}
    )
    async with running(create_app(settings), "http://hubfsm") as hub:
        hub.headers["Authorization"] = f"Bearer {admin_token}"
        await hub.post("/api/goals", json=GOAL)
        await wait_for(hub, "executing")
        await hub.post("/api/hub/pause")  # paused: only the watchdog moves it

        alert = json.loads((await fired.next_msg(timeout=10)).data)
        assert (alert["severity"], alert["from_state"], alert["state"]) == (
            "critical",
            "executing",
            "resting",
        )
        shown = await state(hub)
        assert (shown["state"], shown["paused"], shown["watchdog_at"]) == ("resting", True, None)
        assert (await moves(hub))[-1] == ("executing", "resting", "watchdog")


async def test_a_restarted_hub_resumes_its_state(
    brain_settings: HubSettings, admin_token: str
) -> None:
    app = create_app(brain_settings)
    async with running(app, "http://hubfsm") as hub:
        hub.headers["Authorization"] = f"Bearer {admin_token}"
        goal = (await hub.post("/api/goals", json=GOAL)).json()
        before = await wait_for(hub, "executing")
        await hub.post("/api/hub/pause")
    async with running(create_app(brain_settings), "http://hubfsm") as hub:
        hub.headers["Authorization"] = f"Bearer {admin_token}"
        after = await state(hub)
        assert (after["state"], after["paused"], after["cycle"]) == ("executing", True, 1)
        assert (after["since"], after["watchdog_at"]) == (before["since"], before["watchdog_at"])
        await hub.post(f"/api/goals/{goal['id']}/cancel")
        await hub.post("/api/hub/resume")
        await wait_for(hub, "resting")
        assert [m[1] for m in await moves(hub)] == ["resting", "executing", "resting"]


async def test_the_state_is_answered_over_nats(hub: httpx.AsyncClient, nc: Client) -> None:
    reply = await nc.request("agentcom.rpc.hub.state", b"{}", timeout=5)
    body = json.loads(reply.data)
    assert (body["state"], body["paused"]) == ("resting", False)
    refused = await nc.request("agentcom.rpc.hub.state", b'{"x": 1}', timeout=5)
    assert refused.headers is not None
    assert refused.headers["Nats-Service-Error-Code"] == "invalid_field"
