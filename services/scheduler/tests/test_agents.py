from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import httpx
import pytest
from nats.aio.client import Client

from agentcom_common.contracts.agent import AgentState
from agentcom_common.service import AnySpec
from agentcom_scheduler import names, states
from agentcom_scheduler.app import SPEC

RunService = Callable[[AnySpec], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
async def api(run_service: RunService, admin_token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with run_service(SPEC) as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        yield client


def test_every_agent_state_has_a_row_and_any_state_can_go_offline() -> None:
    assert set(states.TRANSITIONS) == set(AgentState)
    assert states.sources(AgentState.OFFLINE) == set(AgentState) - {AgentState.OFFLINE}


def test_there_are_at_least_fifty_ship_names_and_an_unused_one_is_picked() -> None:
    assert len(set(names.SHIPS)) >= 50
    taken = set(names.SHIPS[:-1])

    assert names.unused(taken) == names.SHIPS[-1]
    assert names.unused(set(names.SHIPS)) not in names.SHIPS


async def test_register_gives_an_offline_agent_with_a_working_agent_token(
    api: httpx.AsyncClient, nc: Client
) -> None:
    sub = await nc.subscribe("agentcom.evt.agent.>")  # pyright: ignore[reportUnknownMemberType]  # nats-py: untyped callback parameter
    made = await api.post("/api/agents", json={"capabilities": ["python"]})
    assert made.status_code == 201, made.text
    agent = made.json()

    assert agent["id"] in names.SHIPS
    assert agent["state"] == "offline"
    whoami = await api.get("/api/whoami", headers={"Authorization": f"Bearer {agent['token']}"})
    assert whoami.json()["role"] == "agent"
    event = await sub.next_msg(timeout=10)
    assert event.subject == "agentcom.evt.agent.registered"


async def test_an_agent_token_cannot_call_admin_routes(api: httpx.AsyncClient) -> None:
    agent = (await api.post("/api/agents", json={"name": "a1"})).json()
    as_agent = {"Authorization": f"Bearer {agent['token']}"}

    for method, path, body in (
        ("POST", "/api/agents", {"name": "a2"}),
        ("DELETE", "/api/agents/a1", None),
        ("POST", "/api/agents/a1/rotate", None),
        ("POST", "/api/agents/a1/restart", None),
        ("PUT", "/api/agents/a1/rate-limits", {"light": 1000}),
        ("POST", "/api/tokens", {"role": "admin", "name": "escalate"}),
        ("GET", "/api/tokens", None),
    ):
        response = await api.request(method, path, json=body, headers=as_agent)
        assert response.status_code == 403, (method, path)


async def test_a_taken_name_is_a_conflict_naming_the_field(api: httpx.AsyncClient) -> None:
    await api.post("/api/agents", json={"name": "gcu-one"})

    again = await api.post("/api/agents", json={"name": "gcu-one"})

    assert again.status_code == 409
    assert again.json()["error"] == "agent_exists"
    assert again.json()["field"] == "name"


async def test_bad_names_are_refused(api: httpx.AsyncClient) -> None:
    for bad in ("Has Space", "dots.are.bad", "x" * 64, "-leading"):
        response = await api.post("/api/agents", json={"name": bad})
        assert response.status_code == 422, bad
        assert response.json()["field"] == "name"


async def test_remove_revokes_the_token_at_once_and_keeps_nothing(api: httpx.AsyncClient) -> None:
    agent = (await api.post("/api/agents", json={"name": "short-lived"})).json()
    as_agent = {"Authorization": f"Bearer {agent['token']}"}
    assert (await api.get("/api/whoami", headers=as_agent)).status_code == 200

    removed = await api.delete("/api/agents/short-lived")

    assert removed.status_code == 200
    assert (await api.get("/api/whoami", headers=as_agent)).status_code == 401
    assert (await api.get("/api/agents/short-lived")).status_code == 404
    assert (await api.delete("/api/agents/short-lived")).json()["error"] == "agent_not_found"


async def test_history_starts_with_registration(api: httpx.AsyncClient) -> None:
    await api.post("/api/agents", json={"name": "h1"})

    history = (await api.get("/api/agents/h1/history")).json()

    assert [(h["from_state"], h["to_state"], h["reason"]) for h in history] == [
        (None, "offline", "registered")
    ]
