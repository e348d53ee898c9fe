"""The service shell every service shares, exercised through the queue's spec.

The spec is found through the `agentcom.services` entry point, as `agentcom up` would, so the
common library's tests import no service.
"""

import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from importlib.metadata import entry_points
from typing import cast

import httpx
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import auth, subjects
from agentcom_common.contracts.system import ServiceStarted
from agentcom_common.service import AnySpec, ServiceSpec, create_app, own_of
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import NatsServer, eventually, running

RunService = Callable[[AnySpec], AbstractAsyncContextManager[httpx.AsyncClient]]


def _spec(name: str) -> AnySpec:
    (point,) = entry_points(group="agentcom.services", name=name)
    spec: object = point.load()
    assert isinstance(spec, ServiceSpec)
    return cast(AnySpec, spec)


@pytest.fixture
async def queue(run_service: RunService) -> AsyncIterator[httpx.AsyncClient]:
    async with run_service(_spec("queue")) as client:
        yield client


async def test_ready_when_postgres_and_nats_answer(queue: httpx.AsyncClient) -> None:
    response = await queue.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["ready"] is True
    assert {c["name"]: c["ok"] for c in body["checks"]} == {"postgres": True, "nats": True}


async def test_not_ready_once_nats_is_gone_but_still_alive(
    queue: httpx.AsyncClient, nats_server: NatsServer
) -> None:
    nats_server.stop()

    async def not_ready() -> None:
        response = await queue.get("/readyz")
        assert response.status_code == 503
        assert {c["name"]: c["ok"] for c in response.json()["checks"]}["nats"] is False

    await eventually(not_ready)
    assert (await queue.get("/healthz")).status_code == 200


async def test_start_announces_itself_through_the_outbox(
    queue: httpx.AsyncClient, js: JetStreamContext
) -> None:
    sub = await js.subscribe(subjects.SERVICE_STARTED)

    msg = await sub.next_msg(timeout=10)

    assert ServiceStarted.model_validate_json(msg.data).service == "queue"
    assert msg.headers is not None
    assert msg.headers["Nats-Msg-Id"].startswith("queue.outbox.")


async def test_unknown_route_gets_problem_json(queue: httpx.AsyncClient) -> None:
    response = await queue.get("/api/nope")

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


async def test_calls_without_a_token_are_refused_with_a_hint(queue: httpx.AsyncClient) -> None:
    response = await queue.get("/api/whoami")

    assert response.status_code == 401
    assert response.json()["error"] == "missing_token"
    assert "agentcom token" in response.json()["detail"]


async def test_wrong_scheme_names_the_header(queue: httpx.AsyncClient) -> None:
    response = await queue.get("/api/whoami", headers={"Authorization": "Token abc"})

    assert response.status_code == 401
    assert response.json()["field"] == "authorization"


async def test_a_revoked_token_stops_working(
    queue: httpx.AsyncClient, engine: AsyncEngine, admin_token: str
) -> None:
    headers = {"Authorization": f"Bearer {admin_token}"}
    assert (await queue.get("/api/whoami", headers=headers)).json()["role"] == "admin"

    await auth.revoke(engine, auth.token_id(admin_token), _spec("queue").outbox)

    async def refused() -> None:
        response = await queue.get("/api/whoami", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_token"

    await eventually(refused)


async def test_tokens_are_stored_only_as_hashes(engine: AsyncEngine, admin_token: str) -> None:
    async with engine.connect() as conn:
        rows = (await conn.execute(auth.tokens.select())).all()

    stored = json.dumps([list(map(str, row)) for row in rows])
    assert admin_token not in stored
    assert auth.digest(admin_token) in stored


async def test_micro_service_answers_ping_and_health(queue: httpx.AsyncClient, nc: Client) -> None:
    ping = await nc.request("$SRV.PING.agentcom-queue", b"", timeout=5)
    health = await nc.request("agentcom.rpc.queue.health", b"{}", timeout=5)

    assert json.loads(ping.data)["name"] == "agentcom-queue"
    assert json.loads(health.data)["ready"] is True


async def test_micro_refuses_unknown_fields_with_a_code(
    queue: httpx.AsyncClient, nc: Client
) -> None:
    reply = await nc.request("agentcom.rpc.queue.health", b'{"verbose": true}', timeout=5)

    assert reply.headers is not None
    assert reply.headers["Nats-Service-Error-Code"] == "invalid_field"
    assert reply.headers["Nats-Service-Error"].startswith("verbose:")


async def test_micro_refuses_malformed_json_with_a_code(
    queue: httpx.AsyncClient, nc: Client
) -> None:
    reply = await nc.request("agentcom.rpc.queue.health", b"{not json", timeout=5)

    assert reply.headers is not None
    assert reply.headers["Nats-Service-Error-Code"] == "invalid_field"


async def test_a_405_allows_every_method_the_path_serves(queue: httpx.AsyncClient) -> None:
    """GET and POST /api/tasks are two routes; Starlette alone names only the first."""
    wrong = await queue.request("TRACE", "/api/tasks")
    cancel = await queue.delete("/api/tasks/task-0000000000000000/cancel")

    assert wrong.status_code == 405
    assert wrong.json()["error"] == "method_not_allowed"
    assert wrong.headers["Allow"] == "GET, POST"
    assert cancel.headers["Allow"] == "POST"


async def test_the_document_declares_what_a_route_answers(queue: httpx.AsyncClient) -> None:
    document = (await queue.get("/openapi.json")).json()
    get_task = document["paths"]["/api/tasks/{task_id}"]["get"]["responses"]
    whoami = document["paths"]["/api/whoami"]["get"]["responses"]
    problem = {"$ref": "#/components/schemas/Problem"}

    assert set(get_task) == {"200", "401", "403", "404", "413", "422", "503"}
    assert get_task["404"]["content"]["application/json"]["schema"] == problem
    assert set(whoami) == {"200", "401", "503"}  # a token of any role: never 403
    task_id = document["paths"]["/api/tasks/{task_id}"]["get"]["parameters"][0]["schema"]
    assert task_id["pattern"] == "^[^\\x00]*$"  # the edge refuses NUL everywhere


async def test_the_api_docs_page_works_without_internet(queue: httpx.AsyncClient) -> None:
    """Swagger UI and ReDoc come from the package, not a CDN: /docs renders offline."""
    for page in ("/docs", "/redoc"):
        html = (await queue.get(page)).text
        assert "cdn." not in html, html
        assert "unpkg" not in html, html
        assets = re.findall(r'(?:src|href)="(/[^"]+\.(?:js|css))"', html)
        assert assets, html
        for asset in assets:
            served = await queue.get(asset)
            assert served.status_code == 200, asset
            assert len(served.content) > 10_000, asset  # the real bundle, not a stub


async def test_two_apps_of_one_service_in_one_process_share_no_state(
    settings: CommonSettings,
) -> None:
    """Two replicas in one process (as the tests run them) each build their own state (the
    queue's ops, submit group, limits) and their own relay, which their commits wake."""
    spec = _spec("queue")
    first, second = create_app(spec, settings), create_app(spec, settings)
    async with running(first, "http://a"), running(second, "http://b"):
        mine, theirs = own_of(first, object), own_of(second, object)
        assert mine is not theirs
        assert type(mine) is type(theirs)
        relays = {id(app.state.resources.relay) for app in (first, second)}
        assert len(relays) == 2
        with pytest.raises(RuntimeError, match="not ServiceStarted"):
            own_of(first, ServiceStarted)  # a route asking for the wrong type is told so
