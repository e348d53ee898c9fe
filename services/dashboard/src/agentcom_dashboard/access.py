"""Who is looking: the `Live` state and the login session as FastAPI dependencies."""

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from agentcom_common import service
from agentcom_common.errors import ForbiddenError, UnauthorizedError
from agentcom_common.openapi import answers
from agentcom_dashboard import sessions
from agentcom_dashboard.live import Live


def get_live(conn: HTTPConnection) -> Live:
    return service.own(conn, Live)  # the dashboard's own state, built by `live.start`


LiveDep = Annotated[Live, Depends(get_live)]


async def current_session(conn: HTTPConnection) -> sessions.Session | None:
    return await sessions.load(get_live(conn).engine, conn.cookies.get(sessions.COOKIE))


SessionDep = Annotated[sessions.Session | None, Depends(current_session)]


@answers(401)
async def viewer(conn: HTTPConnection) -> sessions.Session | None:
    """The session, if any; refuses with 401 when viewing needs a login and there is none."""
    session = await current_session(conn)
    if session is None and get_live(conn).settings.login_to_view:
        raise UnauthorizedError("log in to view the dashboard", code="login_required")
    return session


ViewerDep = Annotated[sessions.Session | None, Depends(viewer)]


@answers(401, 403)
async def admin(request: Request) -> sessions.Session:
    """An admin session whose request carries its CSRF token and comes from this origin."""
    check_origin(request)
    session = await current_session(request)
    if session is None:
        raise UnauthorizedError("log in as an admin first", code="login_required")
    session.require_admin(request.headers.get(sessions.CSRF_HEADER))
    return session


AdminDep = Annotated[sessions.Session, Depends(admin)]


@answers(401, 403)
async def member(request: Request) -> sessions.Session:
    """Any logged-in session (viewer or admin) with its CSRF token: for push subscriptions."""
    check_origin(request)
    session = await current_session(request)
    if session is None:
        raise UnauthorizedError("log in first", code="login_required")
    if request.headers.get(sessions.CSRF_HEADER) != session.csrf:
        raise ForbiddenError("missing or wrong X-CSRF-Token header", code="csrf_failed")
    return session


MemberDep = Annotated[sessions.Session, Depends(member)]


def check_origin(conn: HTTPConnection) -> None:
    """Refuse a browser request sent by another site (its Origin differs from our host)."""
    origin = conn.headers.get("origin")
    if origin is None:
        return  # not a cross-site browser request (curl, same-origin GET)
    if urlsplit(origin).netloc != conn.headers.get("host"):
        raise ForbiddenError(f"requests from {origin} are not allowed", code="bad_origin")
