from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from importlib.metadata import entry_points

import httpx
import pytest
from nats.js import JetStreamContext
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import auth, clock, subjects
from agentcom_common.contracts.auth import TokenRevoked
from agentcom_common.service import AnySpec, create_app
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import NatsServer, eventually, running, start_nats
from agentcom_scheduler.app import SPEC

RunService = Callable[[AnySpec], AbstractAsyncContextManager[httpx.AsyncClient]]


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
    """The queue caches tokens for the longest allowed (60 s); only the event can clear it."""
    (point,) = entry_points(group="agentcom.services", name="queue")
    long_cache = settings.model_copy(update={"auth_cache_ttl": timedelta(seconds=60)})
    made = (await scheduler.post("/api/tokens", json={"role": "agent", "name": "a1"})).json()
    headers = {"Authorization": f"Bearer {made['token']}"}
    async with running(create_app(point.load(), long_cache)) as queue:
        assert (await queue.get("/api/whoami", headers=headers)).status_code == 200

        revoked = await scheduler.delete(f"/api/tokens/{made['token_id']}")
        assert revoked.json()["revoked_at"] is not None

        async def refused() -> None:
            assert (await queue.get("/api/whoami", headers=headers)).status_code == 401

        await eventually(refused, timeout=5)


async def test_revocations_are_published_through_the_scheduler_outbox(
    scheduler: httpx.AsyncClient, js: JetStreamContext
) -> None:
    """Written in the revocation's transaction, so published even if the scheduler dies right
    after the commit (the outbox's guarantee; `Nats-Msg-Id` names the row)."""
    made = (await scheduler.post("/api/tokens", json={"role": "viewer", "name": "v"})).json()
    agent = (await scheduler.post("/api/agents", json={"name": "leaving"})).json()
    sub = await js.subscribe(subjects.TOKEN_REVOKED)

    await scheduler.delete(f"/api/tokens/{made['token_id']}")
    await scheduler.delete(f"/api/tokens/{made['token_id']}")  # idempotent: no second event
    await scheduler.delete("/api/agents/leaving")

    seen = [await sub.next_msg(timeout=10) for _ in range(2)]
    assert [TokenRevoked.model_validate_json(m.data).token_id for m in seen] == [
        made["token_id"],
        agent["token_id"],
    ]
    for msg in seen:
        assert msg.headers is not None
        assert msg.headers["Nats-Msg-Id"].startswith("scheduler.outbox.")
    with pytest.raises(TimeoutError):
        await sub.next_msg(timeout=0.5)


async def _revoke_unannounced(engine: AsyncEngine, token_id: str) -> None:
    """A revocation whose event this service never sees (it was away from NATS)."""
    async with engine.begin() as conn:
        done = auth.tokens.c.id == token_id
        await conn.execute(update(auth.tokens).where(done).values(revoked_at=clock.now()))


async def _nats_is(queue: httpx.AsyncClient, up: bool) -> None:
    async def check() -> None:
        checks = (await queue.get("/readyz")).json()["checks"]
        assert {c["name"]: c["ok"] for c in checks}["nats"] is up

    await eventually(check, timeout=20)


@pytest.fixture
async def long_cached_queue(
    settings: CommonSettings,
) -> AsyncIterator[httpx.AsyncClient]:
    (point,) = entry_points(group="agentcom.services", name="queue")
    long_cache = settings.model_copy(update={"auth_cache_ttl": timedelta(seconds=60)})
    async with running(create_app(point.load(), long_cache)) as queue:
        yield queue


async def test_a_service_away_from_nats_trusts_no_cached_token(
    long_cached_queue: httpx.AsyncClient,
    engine: AsyncEngine,
    nats_server: NatsServer,
) -> None:
    issued = await auth.issue(engine, auth.Role.VIEWER, "cached")
    headers = {"Authorization": f"Bearer {issued.token}"}
    assert (await long_cached_queue.get("/api/whoami", headers=headers)).status_code == 200
    nats_server.stop()
    await _nats_is(long_cached_queue, up=False)

    await _revoke_unannounced(engine, issued.token_id)

    refused = await long_cached_queue.get("/api/whoami", headers=headers)
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_token"


async def test_a_token_cached_before_a_reconnect_is_checked_again(
    long_cached_queue: httpx.AsyncClient,
    engine: AsyncEngine,
    nats_server: NatsServer,
) -> None:
    """Revoked while the queue was away from NATS, and not asked about until it is back: the
    event went by unseen, so the cache from before the drop is not trusted."""
    issued = await auth.issue(engine, auth.Role.VIEWER, "cached")
    headers = {"Authorization": f"Bearer {issued.token}"}
    assert (await long_cached_queue.get("/api/whoami", headers=headers)).status_code == 200
    nats_server.stop()
    await _nats_is(long_cached_queue, up=False)
    await _revoke_unannounced(engine, issued.token_id)
    port = int(nats_server.address.rsplit(":", 1)[1])
    again = start_nats(nats_server.store, port, nats_server.auth)
    try:
        await _nats_is(long_cached_queue, up=True)

        refused = await long_cached_queue.get("/api/whoami", headers=headers)
    finally:
        again.stop()
    assert refused.status_code == 401
