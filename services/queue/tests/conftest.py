from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from agentcom_common.settings import CommonSettings
from agentcom_common.testing import running
from agentcom_queue.app import create_app
from agentcom_queue.settings import QueueSettings


@pytest.fixture
def queue_settings(settings: CommonSettings) -> QueueSettings:
    return QueueSettings.model_validate(
        settings.model_dump() | {"queue_retry_backoff": timedelta(0)}
    )


@pytest.fixture
async def api(queue_settings: QueueSettings, admin_token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with running(create_app(queue_settings), "http://queue") as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        yield client
