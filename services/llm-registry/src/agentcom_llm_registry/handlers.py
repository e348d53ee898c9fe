"""NATS: `agentcom.rpc.llm.chat|endpoints|check|fallback`, and the loops the service owns
(health, heartbeats, ledger)."""

import asyncio
import logging
import time
from collections.abc import Callable

from agentcom_common import metering, micro
from agentcom_common.contracts.llm import (
    ChatReply,
    ChatRequest,
    ChatToolCall,
    CheckEndpoint,
    EndpointHealth,
    EndpointList,
    ListEndpoints,
    RouteFallback,
    TierFallback,
)
from agentcom_common.service import Loops, Resources
from agentcom_llm_registry import fallbacks, health, heartbeats, meters
from agentcom_llm_registry.budgets import Who
from agentcom_llm_registry.ops import Llm
from agentcom_llm_registry.registry import Endpoint
from agentcom_llm_registry.settings import LlmSettings
from agentcom_llm_registry.upstream import Call

log = logging.getLogger(__name__)


async def chat(s: Llm, req: ChatRequest) -> ChatReply:
    """One non-streamed chat call, routed exactly like the HTTP gateway's."""
    call = Call(list(req.messages), list(req.tools) if req.tools else None, dict(req.options))
    began = time.perf_counter()
    # only services reach this subject: the call is the hub's, paid by its current state
    who = Who(req.caller, f"hub:{s.hub.state}", goal_id=req.goal_id)
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


def health_of(s: Llm, endpoint: Endpoint) -> EndpointHealth:
    return EndpointHealth(
        id=endpoint.id,
        health=endpoint.health,
        circuit=endpoint.circuit,
        tiers=s.registry.tiers_of(endpoint),
        last_error=endpoint.last_error,
        shared=endpoint.probed(),
    )


def endpoints(s: Llm) -> EndpointList:
    """Every endpoint's health and tiers, and the tiers falling back now (with until when)."""
    fallbacks = {
        tier: found.until
        for tier, found in list(s.registry.fallbacks.items())
        if s.registry.falls_back(tier)
    }
    return EndpointList(
        endpoints=[health_of(s, e) for e in s.registry.endpoints.values()],
        tiers=list(s.registry.tiers),
        fallbacks=fallbacks,
    )


async def check(s: Llm, req: CheckEndpoint) -> EndpointHealth:
    """A health check now (as `POST /api/llm/endpoints/{id}/check`)."""
    endpoint = s.find(req.endpoint_id)
    await health.check(s, endpoint)
    return health_of(s, endpoint)


async def fallback(s: Llm, req: RouteFallback) -> TierFallback:
    done = await fallbacks.fall_back(s, req.tier, req.seconds, req.reason)
    classes, until = done.classes, done.until
    log.warning(
        "tier.fallback" if until else "tier.fallback_ended",
        extra={
            "tier": req.tier,
            "classes": classes,
            "until": until.isoformat() if until else None,
            "reason": req.reason,
        },
    )
    return done


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
        await s.hub.follow(res.nc, res.js)
        await fallbacks.follow(s, res.nc)
        publish(s)
        loops.spawn("llm-lifetime", _lifetime(s))
        loops.spawn("llm-ledger", s.ledger.run())
        loops.spawn("llm-health", health.check_forever(s))
        loops.spawn("llm-heartbeats", heartbeats.consume(s, res.js))
        every = res.settings.metrics_sample_interval
        loops.spawn(
            "llm-metrics",
            metering.sample_forever(every, [meters.sampler(s.registry, s.budgets)]),
        )

        async def rpc_chat(req: ChatRequest) -> ChatReply:
            return await chat(s, req)

        async def rpc_endpoints(_req: ListEndpoints) -> EndpointList:
            return endpoints(s)

        async def rpc_check(req: CheckEndpoint) -> EndpointHealth:
            return await check(s, req)

        async def rpc_fallback(req: RouteFallback) -> TierFallback:
            return await fallback(s, req)

        depth = res.settings.json_max_depth
        for name, handler in (
            ("chat", micro.endpoint(ChatRequest, rpc_chat, max_depth=depth)),
            ("endpoints", micro.endpoint(ListEndpoints, rpc_endpoints, max_depth=depth)),
            ("check", micro.endpoint(CheckEndpoint, rpc_check, max_depth=depth)),
            ("fallback", micro.endpoint(RouteFallback, rpc_fallback, max_depth=depth)),
        ):
            await res.group.add_endpoint(name=name, handler=handler)

    return start  # pyright: ignore[reportReturnType]
