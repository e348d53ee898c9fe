import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import httpx
from nats.aio.client import Client

from agentcom_common.service import ServiceSpec
from agentcom_hubfsm.app import SPEC

RunService = Callable[[ServiceSpec], AbstractAsyncContextManager[httpx.AsyncClient]]


async def test_starts_ready_and_answers_on_nats(run_service: RunService, nc: Client) -> None:
    async with run_service(SPEC) as client:
        ready = await client.get("/readyz")
        ping = await nc.request("$SRV.PING.agentcom-hubfsm", b"", timeout=5)
        health = await nc.request("agentcom.rpc.hub.health", b"{}", timeout=5)

    assert ready.status_code == 200, ready.text
    assert json.loads(ping.data)["name"] == "agentcom-hubfsm"
    assert json.loads(health.data)["service"] == "hubfsm"
