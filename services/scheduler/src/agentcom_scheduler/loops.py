"""The scheduler's loops, started with the service: reports, presence sweep, matching; and its
NATS RPC (`agentcom.rpc.scheduler.explain|agents|restart`)."""

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Literal

from agentcom_common import consumer, micro
from agentcom_common.contracts.agent import AgentList, AgentView, ListAgents, RestartAgent
from agentcom_common.contracts.task import ExplainWait
from agentcom_common.service import Loops, Resources
from agentcom_scheduler import cancels, credentials, explain, limits, matching, ops, presence
from agentcom_scheduler.settings import SchedulerSettings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Runtime:
    """The scheduler's own state: what its loops share with its HTTP routes (built once per app
    by `start`, the spec's builder; the callout is set when this app answers NATS logins)."""

    s: ops.Scheduler
    limiter: limits.Limiter = field(default_factory=lambda: limits.Limiter(limits.DEFAULT_RATES))
    callout: credentials.Callout | None = None

    @classmethod
    def of(cls, settings: SchedulerSettings, s: ops.Scheduler) -> "Runtime":
        return cls(
            s,
            limiter=limits.Limiter(
                rates={
                    "light": settings.scheduler_rate_light,
                    "normal": settings.scheduler_rate_normal,
                    "heavy": settings.scheduler_rate_heavy,
                },
                window=settings.scheduler_validation_window,
                violation_limit=settings.scheduler_validation_limit,
                cooldowns=settings.scheduler_validation_cooldowns,
            ),
        )

    async def kick(self, agent_id: str) -> None:
        """Close the agent's open NATS connections, if this process answers NATS logins."""
        if self.callout is None:
            return
        try:
            await self.callout.kick(agent_id)
        except Exception:  # the login is refused anyway; an open connection is the rest
            log.exception("nats_login.kick_failed", extra={"agent_id": agent_id})


async def start(settings: SchedulerSettings, res: Resources, loops: Loops) -> Runtime:
    """Build the scheduler's own state and start its loops and NATS endpoints on it."""
    s = ops.Scheduler(res.engine, res.outbox, res.relay)
    runtime = Runtime.of(settings, s)
    await res.group.add_endpoint(
        name="explain", handler=micro.endpoint(ExplainWait, partial(explain.why_waiting, s))
    )
    await _register_agents(s, res)
    if settings.scheduler_nats_issuer_seed is not None and settings.nats_url:
        runtime.callout = credentials.Callout(
            res.engine,
            res.nc,
            settings.nats_url,
            settings.scheduler_nats_issuer_seed.get_secret_value(),
            runtime.limiter,
        )
        await runtime.callout.start()
        loops.spawn("nats-logins", _hold(runtime.callout))
    silence = presence.silence_for(
        settings.scheduler_heartbeat_interval, settings.scheduler_missed_heartbeats
    )
    gate = presence.Gate(limiter=runtime.limiter)
    policy = consumer.Policy.of(settings)
    loops.spawn(
        "agent-reports",
        presence.consume_reports(s, res.nc, res.js, gate, runtime.kick, policy),
    )
    loops.spawn("cancels", cancels.follow(s, res.js, policy))
    # Every loop below runs on every replica at once; none takes the leader lock (a leader
    # would add its lease of grace to detection after each failover). Each is safe concurrently:
    # - presence sweep (silence, unaccepted, deadlines): one transaction locks the agent rows it
    #   judges `FOR UPDATE SKIP LOCKED` and holds them across the hand-back, so a row is judged by
    #   one replica; the next replica's pass sees it moved (one hand-back, one history row, one
    #   deadline cancel: tests/test_sweeps_shared.py);
    # - stranded sweeps: the queue's requeue is fenced by generation and state, so the second
    #   replica's requeue of a task changes nothing (the cost is a second listing per pass);
    # - matching: the queue's claim takes tasks `SKIP LOCKED` and the agent's move is a guarded
    #   UPDATE, so no task goes to two agents and no agent gets two (test_matching_shared.py);
    # - reports: one durable consumer shared by the replicas, each report delivered to one.
    every = settings.scheduler_sweep_interval
    sweeps: tuple[tuple[Literal["working", "assigned"], timedelta], ...] = (
        ("working", settings.scheduler_working_offline_timeout),
        ("assigned", settings.scheduler_accept_timeout),  # never sent: see `requeue_stranded`
    )
    for state, older in sweeps:
        loops.spawn(
            f"stranded-{state}",
            presence.stranded_forever(s, res.nc, state, older, max(every, older / 10)),
        )
    loops.spawn(
        "matching",
        matching.match_forever(
            s,
            res.nc,
            res.js,
            settings.scheduler_sweep_interval,
            settings.scheduler_execution_timeout,
        ),
    )
    loops.spawn(
        "presence-sweep",
        presence.sweep_forever(
            s,
            res.nc,
            res.js,
            silence,
            settings.scheduler_accept_timeout,
            settings.scheduler_sweep_interval,
            settings.scheduler_heartbeat_interval,
            gate,
            grace=settings.scheduler_deadline_grace,
        ),
    )
    return runtime


async def _register_agents(s: ops.Scheduler, res: Resources) -> None:
    """`agents` (the fleet, as `GET /api/agents` for an admin) and `restart` (as `POST
    /api/agents/{id}/restart`): what the hub's health assessment and healing ask."""

    async def agents(_body: ListAgents) -> AgentList:
        return AgentList(agents=await ops.listing(s))

    async def restart(body: RestartAgent) -> AgentView:
        agent = await ops.restart(s, res.js, body.agent_id)
        log.info("agent.restart_requested", extra={"agent_id": body.agent_id, "by": "nats"})
        return agent

    await res.group.add_endpoint(name="agents", handler=micro.endpoint(ListAgents, agents))
    await res.group.add_endpoint(name="restart", handler=micro.endpoint(RestartAgent, restart))


async def _hold(callout: credentials.Callout) -> None:
    """Keep the callout's system connection for the life of the process, then close it."""
    try:
        await asyncio.Event().wait()
    finally:
        await callout.close()
