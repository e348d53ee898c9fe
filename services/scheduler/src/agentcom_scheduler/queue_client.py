"""Calls to the queue over its NATS RPC (the scheduler never touches the queue's tables)."""

import json
from typing import Any

from nats.aio.client import Client
from nats.errors import NoRespondersError, TimeoutError as NatsTimeoutError

from agentcom_common.contracts.base import Contract
from agentcom_common.errors import AgentcomError, ConflictError, UnavailableError


async def call(nc: Client, op: str, body: Contract, timeout: float = 5.0) -> dict[str, Any]:
    try:
        reply = await nc.request(
            f"agentcom.rpc.queue.{op}", body.model_dump_json().encode(), timeout=timeout
        )
    except (NoRespondersError, NatsTimeoutError) as exc:
        raise UnavailableError(
            f"the queue did not answer {op} ({type(exc).__name__})", code="queue_unavailable"
        ) from exc
    headers = reply.headers or {}
    if code := headers.get("Nats-Service-Error-Code"):
        error = (
            ConflictError if code in {"stale_generation", "invalid_transition"} else AgentcomError
        )
        raise error(headers.get("Nats-Service-Error", code), code=code)
    return json.loads(reply.data)
