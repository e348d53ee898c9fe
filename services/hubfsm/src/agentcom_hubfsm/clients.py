"""Typed NATS calls from the hub to the other services (the hub never touches their tables).

`chat` is the hub's one way to a model: `agentcom.rpc.llm.chat` on the llm-registry's gateway,
which routes by tier with fallback and charges the hub state's budget. No CLI is ever spawned
for a model.
"""

import math

from nats.aio.client import Client
from nats.errors import NoRespondersError, TimeoutError as NatsTimeoutError

from agentcom_common import subjects
from agentcom_common.contracts.llm import ChatReply, ChatRequest
from agentcom_common.errors import AgentcomError, TooManyRequestsError, UnavailableError

# error codes of the gateway that mean "the same call may work later"
_LATER: frozenset[str] = frozenset({"upstream_failed", "no_endpoint_available"})


async def chat(nc: Client, request: ChatRequest, *, timeout: float) -> ChatReply:
    """One model call through the gateway.

    Raises `UnavailableError` (no gateway answered in `timeout` s, or no endpoint could take
    the call: retry with backoff), `TooManyRequestsError` (a budget is spent; `retry_after`
    says when its window closes) and `AgentcomError` with the gateway's code for a refusal
    (`invalid_field`, `upstream_bad_request`: the request itself is wrong)."""
    subject = f"{subjects.rpc_group('llm')}.chat"
    try:
        msg = await nc.request(subject, request.model_dump_json().encode(), timeout=timeout)
    except (NoRespondersError, NatsTimeoutError) as exc:
        raise UnavailableError(
            f"the LLM gateway did not answer ({type(exc).__name__})", code="llm_unavailable"
        ) from exc
    headers = msg.headers or {}
    code = headers.get("Nats-Service-Error-Code")
    if code is None:
        return ChatReply.model_validate_json(msg.data)
    detail = headers.get("Nats-Service-Error", code)
    retry_after = _seconds(headers.get("Retry-After"))
    if code in ("budget_exhausted", "rate_limited"):
        raise TooManyRequestsError(detail, code=code, retry_after=retry_after)
    if code in _LATER or code.endswith("_unavailable"):
        raise UnavailableError(detail, code=code, retry_after=retry_after)
    raise AgentcomError(detail, code=code)


def _seconds(value: str | None) -> float:
    try:
        seconds = float(value) if value is not None else 1.0
    except ValueError:
        return 1.0
    return seconds if math.isfinite(seconds) and seconds >= 0 else 1.0
