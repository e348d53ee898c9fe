"""Problem JSON from `web.install_error_handlers`, on a tiny app with one raising route."""

from pathlib import Path

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine

from agentcom_common import db, messaging
from agentcom_common.errors import NotFoundError, TooManyRequestsError
from agentcom_common.testing import NatsServer
from agentcom_common.web import install_error_handlers


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/limited")
    async def limited() -> None:
        raise TooManyRequestsError("slow down", retry_after=0.25, code="rate_limited")

    @app.get("/missing")
    async def missing() -> None:
        raise NotFoundError("no such thing", code="thing_not_found")

    return app


async def test_a_429_carries_retry_after_in_the_body_and_the_header() -> None:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        reply = await client.get("/limited")

    assert reply.status_code == 429
    assert reply.json() == {"error": "rate_limited", "detail": "slow down", "retry_after": 0.25}
    assert reply.headers["Retry-After"] == "1"  # whole seconds, rounded up, never 0


async def test_other_errors_carry_no_retry_after() -> None:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        reply = await client.get("/missing")

    assert reply.status_code == 404
    assert reply.json() == {"error": "thing_not_found", "detail": "no such thing"}
    assert "Retry-After" not in reply.headers


def test_retry_after_header_rounds_up_to_whole_seconds() -> None:
    assert TooManyRequestsError("x", retry_after=2.01).headers() == {"Retry-After": "3"}
    assert TooManyRequestsError("x", retry_after=0).headers() == {"Retry-After": "1"}
    assert TooManyRequestsError("x", retry_after=-5).as_body()["retry_after"] == 0.0
    assert TooManyRequestsError("x", retry_after=0.0002).as_body()["retry_after"] == 0.001


def _away_app(tmp_path: Path, nats_url: str) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    # a Postgres stopped cleanly: its socket directory holds no socket any more
    engine = create_async_engine(f"postgresql+asyncpg://postgres@/x?host={tmp_path}&port=5432")

    @app.post("/db")
    async def write_to_db() -> None:
        await db.ping(engine)

    @app.post("/file")
    async def read_a_file() -> None:
        (tmp_path / "missing.txt").read_text()

    @app.post("/nats")
    async def publish() -> None:
        nc = await messaging.connect_once(nats_url, 2.0)
        await nc.close()
        await nc.publish("agentcom.test", b"x")

    return app


async def test_a_stopped_postgres_or_a_closed_nats_is_a_503_with_retry_after(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    transport = httpx.ASGITransport(app=_away_app(tmp_path, nats_server.url))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for path, code in (("/db", "db_unavailable"), ("/nats", "nats_unavailable")):
            reply = await client.post(path)
            assert reply.status_code == 503, reply.text
            assert reply.json()["error"] == code
            assert int(reply.headers["Retry-After"]) >= 1


async def test_a_missing_file_is_still_a_500_not_a_database_outage(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    transport = httpx.ASGITransport(
        app=_away_app(tmp_path, nats_server.url), raise_app_exceptions=False
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        reply = await client.post("/file")

    assert reply.status_code == 500
    assert reply.json()["error"] == "internal"
