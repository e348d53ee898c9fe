"""The HTML page and the login form (Jinja2 templates, static files under /static)."""

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from agentcom_common.errors import AgentcomError
from agentcom_dashboard import __version__, sessions
from agentcom_dashboard.access import LiveDep, SessionDep, check_origin

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(tags=["page"], include_in_schema=False)

# no inline scripts, nothing from other origins, never inside a frame (clickjacking of actions)
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}


def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers.update(PAGE_HEADERS)
    return response


@router.get("/", response_class=HTMLResponse)
async def index(request: Request, live: LiveDep, session: SessionDep) -> Response:
    """The dashboard page; a visitor is sent to /login first when viewing needs a login."""
    if session is None and live.settings.login_to_view:
        return RedirectResponse("/login", status_code=303)
    context = {"session": session, "version": __version__}
    return page(request, "index.html", context)


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, session: SessionDep) -> Response:
    """The login form: paste an admin or viewer token (`agentcom token` prints the admin one)."""
    return page(request, "login.html", {"session": session, "error": None})


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request, live: LiveDep, token: Annotated[str, Form(max_length=500)] = ""
) -> Response:
    """Open a session for a valid admin or viewer token and go to the page."""
    check_origin(request)
    try:
        secret = await sessions.login(live.engine, token, live.settings.dashboard_session_ttl)
    except AgentcomError as exc:
        context = {"session": None, "error": exc.detail}
        return page(request, "login.html", context, exc.status)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        sessions.COOKIE,
        secret,
        max_age=int(live.settings.dashboard_session_ttl.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=live.settings.dashboard_secure_cookies,
    )
    return response


@router.post("/logout")
async def logout(request: Request, live: LiveDep) -> Response:
    """End the session and go back to the page."""
    check_origin(request)
    await sessions.logout(live.engine, request.cookies.get(sessions.COOKIE))
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(sessions.COOKIE)
    return response
