from collections.abc import AsyncIterator

import httpx
import pytest

from agentcom_common.settings import CommonSettings
from agentcom_common.testing import running
from agentcom_hubfsm.app import create_app
from agentcom_hubfsm.settings import HubSettings


@pytest.fixture
def hub_settings(settings: CommonSettings) -> HubSettings:
    return HubSettings.model_validate(settings.model_dump())


@pytest.fixture
async def api(hub_settings: HubSettings, admin_token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with running(create_app(hub_settings), "http://hubfsm") as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        yield client
