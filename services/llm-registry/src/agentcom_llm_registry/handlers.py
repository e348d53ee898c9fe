"""NATS: `agentcom.rpc.llm.chat`, and the loops the service owns (health, heartbeats, ledger)."""

import asyncio
import time
from collections.abc import Callable

from agentcom_common import micro
from agentcom_common.contracts.llm import ChatReply, ChatRequest, ChatToolCall
from agentcom_common.service import Loops, Resources
from agentcom_llm_registry.budgets import Who
from agentcom_llm_registry.ops import Llm
from agentcom_llm_registry.providers import Call
from agentcom_llm_registry.settings import LlmSettings


async def chat(s: Llm, req: ChatRequest) -> ChatReply:
    """One non-streamed chat call, routed exactly like the HTTP gateway's."""
    call = Call(list(req.messages), list(req.tools) if req.tools else None, dict(req.options))
    began = time.perf_counter()
    # only services reach this subject: the call is the hub's, paid by its current state
    who = Who(req.caller, f"hub:{s.hub_state}", goal_id=req.goal_id)
    reply, routing = await s.gateway.chat(call, req.model, req.tier, who)
    return ChatReply(
        content=reply.content,
        tool_calls=[
            ChatToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in reply.tool_calls
        ],
        finish_reason=reply.finish,
        model=routing.model or "",
        endpoint_id=routing.endpoint_id or "",
        tokens_in=reply.tokens_in,
        tokens_out=reply.tokens_out,
        duration_ms=round((time.perf_counter() - began) * 1000, 3),
        cost_usd=reply.cost_usd,
        routing=routing,
    )


async def _lifetime(s: Llm) -> None:
    """Holds the registry open; on cancel (shutdown) flushes the ledger and closes the pool."""
    try:
        await asyncio.Event().wait()
    finally:
        await s.stop()


def starter(
    settings: LlmSettings, publish: Callable[[Llm], None]
) -> Callable[[Resources, Loops], asyncio.Future[None]]:
    async def start(res: Resources, loops: Loops) -> None:
        s = Llm(settings, res.engine, res.outbox)
        await s.start()
        await s.follow_hub_state(res.nc, res.js)
        publish(s)
        loops.spawn("llm-lifetime", _lifetime(s))
        loops.spawn("llm-ledger", s.ledger.run())
        loops.spawn("llm-health", s.health_forever())
        loops.spawn("llm-heartbeats", s.consume_heartbeats(res.js))

        async def rpc_chat(req: ChatRequest) -> ChatReply:
            return await chat(s, req)

        await res.group.add_endpoint(
            name="chat",
            handler=micro.endpoint(ChatRequest, rpc_chat, max_depth=res.settings.json_max_depth),
        )

    return start  # pyright: ignore[reportReturnType]
