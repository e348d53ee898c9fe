"""HTTP API of the scheduler: tokens, agents and their credentials, stats."""

import contextlib
import logging

from fastapi import APIRouter, Depends, Request, status
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import Field

from agentcom_common import auth, clock, service, subjects
from agentcom_common.contracts.agent import (
    AgentRegistered,
    AgentState,
    AgentTransition,
    AgentView,
    RegisterAgent,
    SchedulerStats,
)
from agentcom_common.contracts.auth import CreateToken, IssuedTokenView, TokenView
from agentcom_common.contracts.base import Contract, Request as Request_
from agentcom_common.errors import NotFoundError
from agentcom_common.openapi import answers, errors
from agentcom_common.service import Res, Resources
from agentcom_common.web import Admin, CurrentPrincipal, Reader, Viewer, check_owned
from agentcom_scheduler import limits, loops, ops

log = logging.getLogger(__name__)


@answers(429)
async def limited(request: Request, who: CurrentPrincipal, res: Res) -> None:
    """Router dependency: an agent's calls draw from its buckets (GET light, others normal)."""
    if who.role is not auth.Role.AGENT:
        return
    agent_id = who.name.removeprefix("agent ")
    tier: limits.RateClass = "light" if request.method == "GET" else "normal"
    await runtime(request).limiter.check(res.engine, agent_id, tier)


router = APIRouter(prefix="/api/tokens", tags=["tokens"])
agents = APIRouter(prefix="/api/agents", tags=["agents"], dependencies=[Depends(limited)])
stats = APIRouter(prefix="/api/scheduler", tags=["scheduler"], dependencies=[Depends(limited)])


def scheduler(request: Request) -> ops.Scheduler:
    return runtime(request).s  # the app's one, shared with its loops


def _view(info: auth.TokenInfo) -> TokenView:
    return TokenView(
        token_id=info.token_id,
        role=info.role.value,
        name=info.name,
        created_at=info.created_at,
        revoked_at=info.revoked_at,
    )


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_token(body: CreateToken, res: Res, who: Admin) -> IssuedTokenView:
    """Create a token with a role; the secret is in this reply only (stored hashed).

    Errors: 401 `missing_token`/`invalid_token`, 403 `forbidden`, 422 `invalid_field`.
    """
    issued = await auth.issue(res.engine, auth.Role(body.role), body.name)
    log.info(
        "token.created", extra={"token_id": issued.token_id, "role": body.role, "by": who.token_id}
    )
    return IssuedTokenView(
        token_id=issued.token_id,
        role=issued.role.value,
        name=issued.name,
        created_at=clock.now(),
        revoked_at=None,
        token=issued.token,
    )


@router.get("")
async def list_tokens(res: Res, _who: Admin) -> list[TokenView]:
    """List every token: id, role, name, when created and revoked. Never the secret."""
    return [_view(info) for info in await auth.list_tokens(res.engine)]


@router.delete("/{token_id}", responses=errors(404))
async def revoke_token(token_id: str, res: Res, who: Admin) -> TokenView:
    """Revoke a token (idempotent). This service refuses it at once, every other one when the
    `token_revoked` event reaches it, and all within `auth_cache_ttl` (at most 60 s).

    Errors: 404 `token_not_found`.
    """
    info = await auth.revoke(res.engine, token_id, res.outbox)
    res.verifier.forget(token_id)
    log.info("token.revoked", extra={"token_id": token_id, "by": who.token_id})
    return _view(info)


def runtime(request: Request) -> loops.Runtime:
    return service.own(request, loops.Runtime)


async def _ensure_consumer(js: JetStreamContext, agent_id: str) -> None:
    """The agent's durable INBOX consumer, bound later by its sidecar (explicit ack)."""
    name = subjects.agent_consumer(agent_id)
    config = ConsumerConfig(
        name=name,
        durable_name=name,
        filter_subject=subjects.agent_inbox(agent_id),
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
    )
    try:
        await js.add_consumer(subjects.INBOX_STREAM, config)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
    except Exception:  # the sidecar creates it if missing; never fail registration
        log.exception("agent.consumer_failed", extra={"agent_id": agent_id})


@agents.post("", status_code=status.HTTP_201_CREATED, responses=errors(409))
async def register_agent(
    body: RegisterAgent, res: Res, request: Request, _who: Admin
) -> AgentRegistered:
    """Register an agent: its `agent` token and its NATS user and password (both shown once,
    stored hashed) and its INBOX consumer. Without a name it gets an unused Culture ship name.

    Errors: 409 `agent_exists`, 422 `invalid_field`.
    """
    made = await ops.register(scheduler(request), body)
    await _ensure_consumer(res.js, made.id)
    log.info("agent.registered", extra={"agent_id": made.id, "token_id": made.token_id})
    return made


@agents.post("/{agent_id}/rotate", responses=errors(404))
async def rotate_agent(agent_id: str, res: Res, request: Request, _who: Admin) -> AgentRegistered:
    """New bearer token and NATS password for an agent (shown once). The old token is revoked
    and the agent's open NATS connections are closed at once; its sidecar must be given the new
    config. Errors: 404 `agent_not_found`.
    """
    made, old_token = await ops.rotate(scheduler(request), agent_id)
    res.verifier.forget(old_token)  # the others: the token_revoked event of its transaction
    await runtime(request).kick(agent_id)
    log.info("agent.rotated", extra={"agent_id": agent_id, "token_id": made.token_id})
    return made


def _own_agent(who: auth.Principal, agent_id: str) -> None:
    """To an agent token, every agent but its own is not there (the same 404)."""
    check_owned(
        who,
        agent_id,
        NotFoundError(
            f"no agent {agent_id} for token {who.token_id}; an agent token reads only its own "
            f"agent ({who.agent_id})",
            code="agent_not_found",
        ),
    )


@agents.get("")
async def list_agents(request: Request, who: Reader) -> list[AgentView]:
    """Every registered agent with its state, capabilities and repos (an agent token: its own
    agent only)."""
    listing = await ops.listing(scheduler(request))
    return [agent for agent in listing if who.agent_id in (None, agent.id)]


@agents.get("/{agent_id}", responses=errors(404))
async def get_agent(agent_id: str, request: Request, who: Reader) -> AgentView:
    """One agent. Errors: 404 `agent_not_found` (also to an agent token for another agent)."""
    _own_agent(who, agent_id)
    return await ops.get(scheduler(request), agent_id)


@agents.get("/{agent_id}/history", responses=errors(404))
async def agent_history(agent_id: str, request: Request, who: Reader) -> list[AgentTransition]:
    """Every state change of an agent with its reason.

    Errors: 404 `agent_not_found` (also to an agent token for another agent)."""
    _own_agent(who, agent_id)
    return await ops.history(scheduler(request), agent_id)


@agents.delete("/{agent_id}", responses=errors(404))
async def remove_agent(agent_id: str, res: Res, request: Request, _who: Admin) -> AgentView:
    """Remove an agent: its token is revoked, its NATS logins refused and its open NATS
    connections closed at once. Errors: 404 `agent_not_found`."""
    removed = await ops.remove(scheduler(request), agent_id)
    res.verifier.forget(removed.token_id)  # the others: the event of its transaction
    await runtime(request).kick(agent_id)
    with contextlib.suppress(Exception):  # gone already, or NATS away: nothing reads it anymore
        await res.js.delete_consumer(subjects.INBOX_STREAM, subjects.agent_consumer(agent_id))
    log.info("agent.removed", extra={"agent_id": agent_id})
    return removed


@agents.post(
    "/{agent_id}/restart", status_code=status.HTTP_202_ACCEPTED, responses=errors(404, 409)
)
async def restart_agent(agent_id: str, res: Res, request: Request, _who: Admin) -> AgentView:
    """Ask the agent's sidecar to restart (a `restart` in its inbox); it reports `restarting`.

    A sidecar restarts by exiting for its supervisor (systemd, pm2, `agentcom up`) to start it
    again: one that said in its hello that nothing supervises it would stop for good, so that
    is refused. Errors: 404 `agent_not_found`, 409 `not_supervised`.
    """
    agent = await ops.restart(scheduler(request), res.js, agent_id)
    log.info("agent.restart_requested", extra={"agent_id": agent_id})
    return agent


class RateLimits(Request_):
    """Per-minute rates of an agent's buckets; a tier left out keeps the default."""

    light: int | None = Field(default=None, ge=1, le=100_000)
    normal: int | None = Field(default=None, ge=1, le=100_000)
    heavy: int | None = Field(default=None, ge=1, le=100_000)


class RateLimitsView(Contract):
    agent_id: str
    light: int
    normal: int
    heavy: int
    overridden: bool


async def _limits_view(request: Request, res: Resources, agent_id: str) -> RateLimitsView:
    rates = await runtime(request).limiter.rates_of(res.engine, agent_id)
    return RateLimitsView(
        agent_id=agent_id,
        light=rates.light,
        normal=rates.normal,
        heavy=rates.heavy,
        overridden=rates.overridden,
    )


@agents.get("/{agent_id}/rate-limits", responses=errors(404))
async def get_rate_limits(agent_id: str, request: Request, res: Res, who: Reader) -> RateLimitsView:
    """The agent's per-minute rates by tier (light, normal, heavy) and whether an admin
    overrode them. Errors: 404 `agent_not_found` (also to an agent token for another agent)."""
    _own_agent(who, agent_id)
    await ops.get(scheduler(request), agent_id)
    return await _limits_view(request, res, agent_id)


@agents.put("/{agent_id}/rate-limits", responses=errors(404))
async def set_rate_limits(
    agent_id: str, body: RateLimits, request: Request, res: Res, _who: Admin
) -> RateLimitsView:
    """Override an agent's per-minute rates (an empty body goes back to the defaults).
    Stored in Postgres: every scheduler replica applies it, from a full bucket. Errors: 404 `agent_not_found`, 422."""
    await ops.get(scheduler(request), agent_id)
    given: dict[limits.RateClass, int | None] = {
        "light": body.light,
        "normal": body.normal,
        "heavy": body.heavy,
    }
    chosen: dict[limits.RateClass, int] = {
        tier: value for tier, value in given.items() if value is not None
    }
    await runtime(request).limiter.set_override(res.engine, agent_id, chosen)
    log.info("agent.rate_limits_set", extra={"agent_id": agent_id, "rates": chosen})
    return await _limits_view(request, res, agent_id)


@stats.get("/stats")
async def scheduler_stats(request: Request, _who: Viewer) -> SchedulerStats:
    """Count agents by state. Errors: 403 `forbidden` to an agent token (the whole fleet)."""
    counts = {state.value: 0 for state in AgentState}
    for agent in await ops.listing(scheduler(request)):
        counts[agent.state.value] += 1
    return SchedulerStats(agents_by_state=counts)
