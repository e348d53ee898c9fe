"""HTTP edges shared by every service: limits on what comes in, problem JSON errors, auth.

Every error a client sees is `{"error": code, "detail": ..., "field"?: ...}`; a request that
fails validation names the field. Only this module and `micro.py` turn errors into replies.
"""

import logging
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from nats import errors as nats_errors
from nats.js import errors as js_errors
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentcom_common import db, openapi, wire
from agentcom_common.auth import Principal, Role, Verifier
from agentcom_common.errors import (
    AgentcomError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    TooLargeError,
    UnavailableError,
)

log = logging.getLogger(__name__)

# what a NATS restart or outage looks like to a route that publishes or asks: not a bad request
NATS_AWAY: tuple[type[Exception], ...] = (
    nats_errors.ConnectionClosedError,
    nats_errors.ConnectionDrainingError,
    nats_errors.ConnectionReconnectingError,
    nats_errors.NoServersError,
    nats_errors.OutboundBufferLimitError,
    nats_errors.StaleConnectionError,
    nats_errors.TimeoutError,
    nats_errors.NoRespondersError,
    js_errors.ServiceUnavailableError,
)


def problem(status: int, code: str, detail: str, field: str | None = None) -> JSONResponse:
    body = {"error": code, "detail": detail}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status)


class InputLimits:
    """ASGI middleware: the rules every request meets before any route sees it.

    The body is at most `max_body` bytes (413 `body_too_large`, refused from Content-Length
    before it is read, or as soon as the bytes pass the limit); a JSON body must parse under
    `wire.loads` (syntax, `max_depth`, finite numbers, storable text: 422 naming the field);
    the path and query must carry no NUL, which no route can store or look up. One place, so
    no route can forget a rule; the route then parses the same bytes again, within limits.
    """

    def __init__(self, app: ASGIApp, *, max_body: int, max_depth: int) -> None:
        self.app, self.max_body, self.max_depth = app, max_body, max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            _check_target(scope)
            body = await self._body(scope, receive)
        except AgentcomError as exc:
            reply = JSONResponse(exc.as_body(), status_code=exc.status, headers=exc.headers())
            await reply(scope, receive, send)
            return
        if body is None:
            await self.app(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body once checked, or None when the method carries none (GET, HEAD)."""
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return None
        headers = Headers(scope=scope)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            raise self._too_large(int(declared))
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise self._too_large(size)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and _is_json(headers.get("content-type")):
            wire.loads(body, max_depth=self.max_depth)
        return body

    def _too_large(self, size: int) -> TooLargeError:
        return TooLargeError(
            f"request body is {size} bytes or more; the limit is {self.max_body} bytes "
            "(AGENTCOM_HTTP_MAX_BODY)",
            code="body_too_large",
            field="body",
        )


def _is_json(content_type: str | None) -> bool:
    """As FastAPI decides it: no content type, `application/json` or `application/*+json`."""
    if not content_type:
        return True
    kind = content_type.split(";", 1)[0].strip().lower()
    main, _, sub = kind.partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


def _check_target(scope: Scope) -> None:
    path: str = scope["path"]
    if "\x00" in path:
        raise InvalidError("path: must not contain NUL characters (%00)", field="path")
    raw: bytes = scope.get("query_string", b"")
    if b"%00" in raw or b"\x00" in raw:  # cheap test first: most queries have none
        for name, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
            if "\x00" in name or "\x00" in value:
                field = f"query.{name.replace(chr(0), '')}"
                raise InvalidError(f"{field}: must not contain NUL characters (%00)", field=field)


async def _on_nats_failure(request: Request, exc: Exception) -> JSONResponse:
    # a route that asks over NATS while the connection is down or closing: the same call
    # works once the client has reconnected, so 503 with Retry-After, never a 500
    log.warning("http.nats_unavailable", extra={"path": request.url.path, "error": repr(exc)})
    away = UnavailableError(
        f"NATS is not reachable ({type(exc).__name__}); retry shortly", code="nats_unavailable"
    )
    return JSONResponse(away.as_body(), status_code=away.status, headers=away.headers())


def install_error_handlers(app: FastAPI) -> None:
    async def on_agentcom_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AgentcomError)
        return JSONResponse(exc.as_body(), status_code=exc.status, headers=exc.headers())

    async def on_invalid(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        error = exc.errors()[0]
        # ("body", "priority") → "priority"; keep "query.limit" style for non-body parts
        loc = [str(part) for part in error["loc"]]
        field = ".".join(loc[1:] if loc and loc[0] == "body" else loc) or "body"
        return problem(422, "invalid_field", f"{field}: {error['msg']}", field)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        reply = problem(exc.status_code, code, str(exc.detail))
        if exc.status_code == 405:  # RFC 9110: a 405 lists what the path does allow
            reply.headers["Allow"] = ", ".join(_allowed(request))
        return reply

    async def on_db_failure(request: Request, exc: Exception) -> JSONResponse:
        if (away := db.unavailable(exc)) is None:
            return await on_unexpected(request, exc)
        log.warning("http.db_unavailable", extra={"path": request.url.path, "error": repr(exc)})
        return JSONResponse(away.as_body(), status_code=away.status, headers=away.headers())

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("http.failed", extra={"path": request.url.path}, exc_info=exc)
        return problem(500, "internal", "internal error; see service logs")

    app.add_exception_handler(AgentcomError, on_agentcom_error)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(StarletteHTTPException, on_http)
    for failure in db.FAILURES:  # a Postgres restart is a 503 the client retries, not a 500
        app.add_exception_handler(failure, on_db_failure)
    for away in NATS_AWAY:
        app.add_exception_handler(away, _on_nats_failure)
    app.add_exception_handler(Exception, on_unexpected)


def _allowed(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette names only the first route's:
    GET and POST of one path are two routes). `create_app` lists the routes."""
    methods: set[str] = set()
    for route in getattr(request.app.state, "http_routes", ()):
        matched = isinstance(route, Route) and route.matches(request.scope)[0] is not Match.NONE
        if matched and route.methods:
            methods |= route.methods
    return sorted(methods)


def verifier(request: Request) -> Verifier:
    return request.app.state.verifier


@openapi.answers(401)
async def principal(request: Request, auth: Annotated[Verifier, Depends(verifier)]) -> Principal:
    return await auth.verify(request.headers.get("authorization"))


def require(*roles: Role) -> object:
    """Dependency: the caller's principal, which must be admin or hold one of `roles`."""

    @openapi.answers(403)
    async def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
        who.require(*roles)
        return who

    return Depends(check)


@openapi.answers(403)
async def reader(who: Annotated[Principal, Depends(principal)]) -> Principal:
    """An admin, a viewer, or an agent token that belongs to an agent (`agent <id>`)."""
    who.require(Role.VIEWER, Role.AGENT)
    if who.role is Role.AGENT and who.agent_id is None:
        raise ForbiddenError(
            f"token {who.token_id} has role agent but belongs to no agent; an agent token "
            "reads only its own agent's work (the scheduler's POST /api/agents issues one)",
            code="not_an_agent",
        )
    return who


def check_owned(who: Principal, owner: str | None, missing: NotFoundError) -> None:
    """Raise `missing` when `who` is an agent and `owner` (the agent a task is assigned to, or
    an agent's own id) is another: to an agent, other agents' work does not exist, so its
    answer is the same 404 as for an id that was never there."""
    if who.role is Role.AGENT and owner != who.agent_id:
        raise missing


CurrentPrincipal = Annotated[Principal, Depends(principal)]
Admin = Annotated[Principal, require()]
Viewer = Annotated[Principal, require(Role.VIEWER)]
"""Admin or viewer: reads of the whole fleet (stats, every endpoint, alerts)."""
Reader = Annotated[Principal, Depends(reader)]
"""Admin, viewer, or an agent reading its own work: a route taking a Reader must narrow what an
agent sees to its own (`Principal.agent_id`, `check_owned`)."""
