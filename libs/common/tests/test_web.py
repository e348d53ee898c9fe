"""Problem JSON from `web.install_error_handlers`, on a tiny app with one raising route."""

import httpx
from fastapi import FastAPI

from agentcom_common.errors import NotFoundError, TooManyRequestsError
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
