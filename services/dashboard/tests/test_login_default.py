"""Viewing needs a login by default whenever the dashboard listens beyond loopback (issue 15):
compose and Kubernetes bind `0.0.0.0`, and the page shows command output. An explicit
`dashboard_login_to_view` still decides."""

from typing import Any

import pytest

from agentcom_common.settings import CommonSettings
from agentcom_common.testing import running
from agentcom_dashboard.app import create_app
from agentcom_dashboard.settings import DashboardSettings


@pytest.mark.parametrize(
    ("http_host", "explicit", "needs_login"),
    [
        ("0.0.0.0", None, True),
        ("192.0.2.7", None, True),
        ("0.0.0.0", False, False),
        ("127.0.0.1", None, False),
        ("127.0.0.1", True, True),
    ],
)
async def test_viewing_needs_a_login_unless_bound_to_loopback_or_set_explicitly(
    settings: CommonSettings, http_host: str, explicit: bool | None, needs_login: bool
) -> None:
    extra: dict[str, Any] = {"http_host": http_host}
    if explicit is not None:
        extra["dashboard_login_to_view"] = explicit
    own = DashboardSettings.model_validate(settings.model_dump() | extra)

    async with running(create_app(own), "http://dashboard") as anonymous:
        page = await anonymous.get("/")
        snapshot = await anonymous.get("/ui/snapshot")

    if needs_login:
        assert (page.status_code, page.headers["location"]) == (303, "/login")
        assert snapshot.status_code == 401
        assert snapshot.json()["error"] == "login_required"
    else:
        assert page.status_code == 200
        assert snapshot.status_code == 200, snapshot.text


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("dash.example", False),
    ],
)
def test_only_loopback_hosts_leave_viewing_open_by_default(host: str, loopback: bool) -> None:
    assert DashboardSettings(http_host=host).login_to_view is not loopback
