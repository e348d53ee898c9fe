from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from agentcom_common.settings import CommonSettings
from agentcom_common.testing import NatsServer, ServiceProcess, running
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


@pytest.fixture
def queue_process(
    nats_server: NatsServer, db_url: str, admin_token: str, tmp_path: Path
) -> Iterator[ServiceProcess]:
    """The queue as a real process (`python -m agentcom_queue`), ready; stopped afterwards."""
    env = {"AGENTCOM_QUEUE_RETRY_BACKOFF": "0", "AGENTCOM_ADMIN_TOKEN": admin_token}
    process = ServiceProcess("queue", nats_server.url, db_url, tmp_path / "queue.log", env)
    process.start()
    yield process
    process.stop()
