"""Typed NATS calls from the hub to the other services (the hub never touches their tables).

`chat` is the hub's one way to a model: `agentcom.rpc.llm.chat` on the llm-registry's gateway,
which routes by tier with fallback and charges the hub state's budget. No CLI is ever spawned
for a model.
"""

from nats.aio.client import Client

from agentcom_common import micro
from agentcom_common.contracts.llm import ChatReply, ChatRequest
from agentcom_common.errors import AgentcomError, UnavailableError

UPSTREAM_RETRY_AFTER = 30.0  # s: every endpoint just failed; an open circuit needs about this


async def chat(nc: Client, request: ChatRequest, *, timeout: float) -> ChatReply:
    """One model call through the gateway.

    Raises `UnavailableError` (no gateway answered within `timeout` s: `llm_unavailable`; no
    endpoint can take the call: `no_endpoint_available`; every endpoint tried failed:
    `upstream_failed`), `TooManyRequestsError` (a budget is spent; `retry_after` says when its
    window closes): a retry later may work. Any other `AgentcomError` is a refusal of the
    request itself (`invalid_field`, `upstream_bad_request`)."""
    try:
        return await micro.call(nc, "llm", "chat", request, ChatReply, timeout=timeout)
    except AgentcomError as exc:
        if exc.code == "upstream_failed":  # the gateway's 502; for the hub a wait, not a verdict
            raise UnavailableError(
                exc.detail, code=exc.code, retry_after=UPSTREAM_RETRY_AFTER
            ) from exc
        raise
