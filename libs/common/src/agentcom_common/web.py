"""HTTP edges shared by every service: problem JSON errors and the auth dependencies.

Every error a client sees is `{"error": code, "detail": ..., "field"?: ...}`; a request that
fails validation names the field. Only this module and `micro.py` turn errors into replies.
"""

import logging
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from agentcom_common.auth import Principal, Role, Verifier
from agentcom_common.errors import AgentcomError

log = logging.getLogger(__name__)


def problem(status: int, code: str, detail: str, field: str | None = None) -> JSONResponse:
    body = {"error": code, "detail": detail}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status)


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

    async def on_http(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return problem(exc.status_code, code, str(exc.detail))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("http.failed", extra={"path": request.url.path}, exc_info=exc)
        return problem(500, "internal", "internal error; see service logs")

    app.add_exception_handler(AgentcomError, on_agentcom_error)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)


def verifier(request: Request) -> Verifier:
    return request.app.state.verifier


async def principal(request: Request, auth: Annotated[Verifier, Depends(verifier)]) -> Principal:
    return await auth.verify(request.headers.get("authorization"))


def require(*roles: Role) -> object:
    """Dependency: the caller's principal, which must be admin or hold one of `roles`."""

    async def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
        who.require(*roles)
        return who

    return Depends(check)


CurrentPrincipal = Annotated[Principal, Depends(principal)]
Admin = Annotated[Principal, require()]
Viewer = Annotated[Principal, require(Role.VIEWER, Role.AGENT)]
