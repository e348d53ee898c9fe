"""Fixtures shared by the scheduler's NATS-login tests (a module's own `api` overrides this one)."""

from collections.abc import AsyncIterator

import httpx
import pytest

from agentcom_common.settings import CommonSettings
from agentcom_common.testing import NatsServer, running
from agentcom_scheduler.app import create_app
from agentcom_scheduler.settings import SchedulerSettings


@pytest.fixture
async def api(
    settings: CommonSettings, nats_server: NatsServer, admin_token: str
) -> AsyncIterator[httpx.AsyncClient]:
    """The scheduler answering the server's auth callout (so agents log in with their own
    NATS users), as an admin HTTP client."""
    own = SchedulerSettings.model_validate(
        settings.model_dump() | {"scheduler_nats_issuer_seed": nats_server.auth.issuer_seed}
    )
    async with running(create_app(own), "http://scheduler") as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        yield client
