from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from importlib.metadata import entry_points

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import auth
from agentcom_common.service import ServiceSpec, create_app
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import eventually, running
from agentcom_scheduler.app import SPEC

RunService = Callable[[ServiceSpec], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
async def scheduler(run_service: RunService, admin_token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with run_service(SPEC) as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        yield client


async def test_admin_creates_a_token_that_works_and_is_listed_without_secret(
    scheduler: httpx.AsyncClient,
) -> None:
    made = await scheduler.post("/api/tokens", json={"role": "viewer", "name": "grafana"})
    assert made.status_code == 201
    token = made.json()["token"]

    who = await scheduler.get("/api/whoami", headers={"Authorization": f"Bearer {token}"})
    listed = await scheduler.get("/api/tokens")

    assert who.json() == {"token_id": made.json()["token_id"], "role": "viewer", "name": "grafana"}
    assert token not in listed.text
    assert made.json()["token_id"] in {row["token_id"] for row in listed.json()}


async def test_a_viewer_cannot_create_tokens(
    scheduler: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    viewer = await auth.issue(engine, auth.Role.VIEWER, "reader")

    response = await scheduler.post(
        "/api/tokens",
        json={"role": "admin", "name": "escalate"},
        headers={"Authorization": f"Bearer {viewer.token}"},
    )

    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"


async def test_misspelt_field_is_named(scheduler: httpx.AsyncClient) -> None:
    response = await scheduler.post("/api/tokens", json={"role": "viewer", "nmae": "x"})

    assert response.status_code == 422
    assert response.json()["field"] in {"name", "nmae"}


async def test_unknown_role_is_refused(scheduler: httpx.AsyncClient) -> None:
    response = await scheduler.post("/api/tokens", json={"role": "root", "name": "x"})

    assert response.status_code == 422
    assert response.json()["field"] == "role"


async def test_revoking_an_unknown_token_is_404(scheduler: httpx.AsyncClient) -> None:
    response = await scheduler.delete("/api/tokens/0000000000000000")

    assert response.status_code == 404
    assert response.json()["error"] == "token_not_found"


async def test_revocation_reaches_another_service_before_its_cache_expires(
    scheduler: httpx.AsyncClient, settings: CommonSettings
) -> None:
    """The queue caches tokens for an hour here; only the revocation event can clear it."""
    (point,) = entry_points(group="agentcom.services", name="queue")
    long_cache = settings.model_copy(update={"auth_cache_ttl": timedelta(hours=1)})
    made = (await scheduler.post("/api/tokens", json={"role": "agent", "name": "a1"})).json()
    headers = {"Authorization": f"Bearer {made['token']}"}
    async with running(create_app(point.load(), long_cache)) as queue:
        assert (await queue.get("/api/whoami", headers=headers)).status_code == 200

        revoked = await scheduler.delete(f"/api/tokens/{made['token_id']}")
        assert revoked.json()["revoked_at"] is not None

        async def refused() -> None:
            assert (await queue.get("/api/whoami", headers=headers)).status_code == 401

        await eventually(refused, timeout=5)
