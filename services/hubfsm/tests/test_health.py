from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import httpx
from nats.aio.client import Client

from agentcom_common.service import AnySpec
from agentcom_common.testing import assert_service_answers
from agentcom_hubfsm.app import SPEC


async def test_starts_ready_and_answers_on_nats(
    run_service: Callable[[AnySpec], AbstractAsyncContextManager[httpx.AsyncClient]],
    nc: Client,
) -> None:
    await assert_service_answers(run_service, nc, SPEC)
