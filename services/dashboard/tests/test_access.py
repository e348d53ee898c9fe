"""Login sessions and actions over plain HTTP: who may do what, and through which service."""

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from dashboard_stack import Stack, dead_letter
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import auth
from agentcom_common.testing import eventually
from agentcom_dashboard import tables


async def logged_in(stack: Stack, token: str) -> tuple[httpx.AsyncClient, str]:
    """A cookie-carrying client logged in with `token`, and its CSRF token."""
    client = httpx.AsyncClient(base_url=stack.dashboard, timeout=10)
    response = await client.post("/login", data={"token": token})
    assert response.status_code == 303, response.text
    snapshot = (await client.get("/ui/snapshot")).json()
    return client, snapshot["csrf"]


@pytest.fixture
async def anonymous(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.dashboard, timeout=10) as client:
        yield client


async def test_admin_retries_a_dead_letter_through_the_queue(stack: Stack, nc: Client) -> None:
    task = await dead_letter(stack, nc)
    client, csrf = await logged_in(stack, stack.admin_token)
    async with contextlib.aclosing(client):
        done = await client.post(f"/ui/tasks/{task['id']}/retry", headers={"X-CSRF-Token": csrf})
        again = await client.post(f"/ui/tasks/{task['id']}/retry", headers={"X-CSRF-Token": csrf})
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "queued"
    assert (await stack.task(task["id"]))["state"] == "queued"
    assert again.status_code == 409  # the queue's refusal, passed on with its code
    assert again.json()["error"] == "invalid_transition"


async def test_a_viewer_cannot_act(stack: Stack, nc: Client) -> None:
    task = await dead_letter(stack, nc)
    client, csrf = await logged_in(stack, stack.viewer_token)
    async with contextlib.aclosing(client):
        page = await client.get("/ui/snapshot")
        refused = await client.post(f"/ui/tasks/{task['id']}/retry", headers={"X-CSRF-Token": csrf})
    assert page.json()["me"] == {"name": "test viewer", "role": "viewer"}
    assert refused.status_code == 403
    assert refused.json()["error"] == "admin_required"
    assert (await stack.task(task["id"]))["state"] == "dead_letter"


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "csrf_failed"),
        ({"X-CSRF-Token": "forged"}, "csrf_failed"),
        ({"Origin": "http://evil.example"}, "bad_origin"),
    ],
)
async def test_admin_action_without_csrf_or_from_another_site_is_refused(
    stack: Stack, nc: Client, headers: dict[str, str], code: str
) -> None:
    task = await dead_letter(stack, nc)
    client, csrf = await logged_in(stack, stack.admin_token)
    if "Origin" in headers:
        headers = headers | {"X-CSRF-Token": csrf}
    async with contextlib.aclosing(client):
        refused = await client.post(f"/ui/tasks/{task['id']}/retry", headers=headers)
    assert refused.status_code == 403
    assert refused.json()["error"] == code
    assert (await stack.task(task["id"]))["state"] == "dead_letter"


async def test_anonymous_action_needs_a_login(stack: Stack, anonymous: httpx.AsyncClient) -> None:
    refused = await anonymous.post("/ui/tasks/abc/cancel")
    assert refused.status_code == 401
    assert refused.json()["error"] == "login_required"


@pytest.mark.parametrize("role", [auth.Role.AGENT, None])
async def test_login_refuses_agent_and_unknown_tokens(
    stack: Stack, engine: AsyncEngine, anonymous: httpx.AsyncClient, role: auth.Role | None
) -> None:
    token = (await auth.issue(engine, role, "x")).token if role else auth.new_token()
    response = await anonymous.post("/login", data={"token": token})
    assert response.status_code == (403 if role else 401)
    assert "agentcom_session" not in response.cookies
    assert ("agent tokens cannot log in" if role else "unknown or revoked token") in response.text


async def test_revoking_the_token_ends_the_session(stack: Stack, engine: AsyncEngine) -> None:
    issued = await auth.issue(engine, auth.Role.ADMIN, "short-lived")
    client, csrf = await logged_in(stack, issued.token)
    await auth.revoke(engine, issued.token_id, tables.outbox_table)
    async with contextlib.aclosing(client):
        refused = await client.post("/ui/tasks/abc/cancel", headers={"X-CSRF-Token": csrf})
    assert refused.status_code == 401


async def test_sessions_store_no_token_in_the_clear(stack: Stack, engine: AsyncEngine) -> None:
    client, _ = await logged_in(stack, stack.admin_token)
    await client.aclose()
    async with engine.connect() as conn:
        rows = (await conn.exec_driver_sql("SELECT * FROM dashboard.sessions")).all()
    dumped = repr(rows)
    assert len(rows) == 1
    assert stack.admin_token not in dumped
    assert str(client.cookies.get("agentcom_session")) not in dumped


async def test_panels_of_missing_services_say_not_available(
    stack: Stack, anonymous: httpx.AsyncClient
) -> None:
    panels: dict[str, Any] = (await anonymous.get("/ui/snapshot")).json()["panels"]
    assert panels["tasks"]["available"] is True
    assert panels["agents"]["available"] is True
    for missing in ("llm_endpoints", "llm_costs", "hub", "goals"):
        assert panels[missing]["available"] is False
        assert "not available" in panels[missing]["detail"]


async def test_hub_pause_without_a_hub_is_503(stack: Stack) -> None:
    client, csrf = await logged_in(stack, stack.admin_token)
    async with contextlib.aclosing(client):
        response = await client.post("/ui/hub/pause", headers={"X-CSRF-Token": csrf})
        bad = await client.post("/ui/hub/explode", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 503
    assert response.json()["error"] == "hubfsm_unavailable"
    assert bad.status_code == 422
    assert bad.json()["field"] == "path.verb"


@pytest.mark.usefixtures("meters")
async def test_prometheus_metrics(stack: Stack, anonymous: httpx.AsyncClient) -> None:
    await stack.submit(priority="high")

    async def scraped() -> None:
        # all in the wait: the event's count comes through JetStream and the outbox gauge with
        # its first sample, each in its own time (the depth and the state count come from one
        # queue statement, `store.count_by`, so they agree)
        text = (await anonymous.get("/metrics")).text
        assert 'agentcom_queue_depth{lane="high"} 1' in text
        assert "# TYPE agentcom_tasks gauge" in text
        assert 'agentcom_tasks{state="queued"} 1' in text
        assert 'agentcom_events_seen_total{area="task"}' in text
        # then the process's OTel instruments, as on every service's /metrics
        assert "# TYPE agentcom_outbox_backlog gauge" in text

    await eventually(scraped, timeout=20)


@pytest.fixture
def dashboard_extra(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {"dashboard_login_to_view": "login_to_view" in request.node.name}


async def test_login_to_view_guards_page_snapshot_and_socket(
    stack: Stack, anonymous: httpx.AsyncClient
) -> None:
    page = await anonymous.get("/")
    snapshot = await anonymous.get("/ui/snapshot")
    client, _ = await logged_in(stack, stack.viewer_token)
    async with contextlib.aclosing(client):
        seen = await client.get("/")
    assert page.status_code == 303
    assert page.headers["location"] == "/login"
    assert snapshot.status_code == 401
    assert seen.status_code == 200
    assert 'id="panel-tasks"' in seen.text
