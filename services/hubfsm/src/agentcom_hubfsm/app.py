"""The hubfsm service as a `ServiceSpec`: what `agentcom_common.service` needs to run it."""

import asyncio
from functools import partial
from pathlib import Path
from typing import Any, Final

from fastapi import FastAPI
from nats.aio.msg import Msg
from pydantic import ValidationError

from agentcom_common import subjects
from agentcom_common.contracts.plan import Plan
from agentcom_common.service import Loops, Resources, ServiceSpec, create_app as build_app
from agentcom_common.settings import CommonSettings
from agentcom_hubfsm import __version__, api, clients, deliveries, handlers, meters, tables
from agentcom_hubfsm.brain import (
    api as brain_api,
    handlers as brain_handlers,
    loop as brain,
    ops as brain_ops,
)
from agentcom_hubfsm.contemplation import (
    api as proposal_api,
    ops as contemplation_ops,
    run as contemplation_run,
    store as contemplation_store,
)
from agentcom_hubfsm.goals import driver, ops, plan as plans, planner, progress
from agentcom_hubfsm.healing import store as healing_store
from agentcom_hubfsm.health import monitor
from agentcom_hubfsm.improving import (
    api as findings_api,
    ops as improving_ops,
    review as improving_review,
    run as improving_run,
    store as improving_store,
)
from agentcom_hubfsm.own import Own
from agentcom_hubfsm.queueclient import QueueClient
from agentcom_hubfsm.repocache import RepoCache
from agentcom_hubfsm.settings import HubSettings
from agentcom_hubfsm.webhooks import api as webhook_api
from agentcom_hubfsm.webhooks.github import GitHub
from agentcom_hubfsm.webhooks.hooks import Hooks


async def _wake_on(wake: asyncio.Event, msg: Msg) -> None:
    del msg  # any announcement: the driver reads the state itself
    wake.set()


async def build(hub: HubSettings, res: Resources, loops: Loops) -> Own:
    """The hub's own state and loops, built once per app."""
    wake = asyncio.Event()  # one per app: routes, RPCs and task events set it
    brain_wake = asyncio.Event()  # the brain's own: hub routes set it, goal events too
    cache = RepoCache(hub.hub_data_dir / "repos")

    async def check_plan(repo: str, plan: dict[str, Any]) -> list[str]:
        try:
            edited = Plan.model_validate(plan)
        except ValidationError as exc:
            return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        snapshot = await cache.snapshot(repo)
        return plans.check(edited, frozenset(snapshot.files))

    goals = ops.Goals(res.engine, res.outbox, wake, check_plan)
    await handlers.register(res, goals)
    hooks = Hooks(
        engine=res.engine,
        outbox=res.outbox,
        settings=hub,
        queue=QueueClient(res.nc),
        github=GitHub(hub.hub_github_api_url, hub.hub_github_token),
        cache=cache,
        goals=goals,
        brain_wake=brain_wake,
    )
    chat = partial(clients.chat, res.nc, timeout=hub.hub_llm_timeout.total_seconds())
    drive = driver.Driver(
        engine=res.engine,
        queue=QueueClient(res.nc),
        planner=partial(planner.plan_goal, chat, cache, fmt=hub.hub_plan_format),
        chat=chat,
        wake=wake,
        sweep=hub.hub_goal_sweep,
        verify_retries=hub.hub_verify_retries,
        replans=hub.hub_replans,
        backoff=hub.hub_llm_backoff,
    )
    # a goal's model steps wait for the hub to announce `executing` (driver._hub_executing):
    # the announcement wakes the driver
    await res.nc.subscribe(subjects.HUB_STATE_CHANGED, cb=partial(_wake_on, wake))  # pyright: ignore[reportUnknownMemberType]  # nats-py: untyped Future parameter
    loops.spawn("goal-driver", drive.run())
    ended = partial(deliveries.ended, hooks)
    loops.spawn("goal-tasks", progress.follow(res.engine, res.js, res.settings, wake, ended))
    brain_hub = brain_ops.Hub(
        res.engine,
        brain_wake,
        hub.hub_global_watchdog,
        healing_store.Policy.of(hub),
        contemplation_store.Pace.of(hub),
        improving_store.Pace.of(hub),
    )
    await brain_handlers.register(res, brain_hub)
    loops.spawn("health-monitor", monitor.forever(res.engine, res.nc, hub, brain_wake))
    contemplator = contemplation_run.Contemplator(res.engine, res.nc, hub, cache, chat, brain_wake)
    reviewer = (
        improving_review.Reviewer(
            cache, chat, hub.hub_improving_review_commits, hub.hub_improving_review_max_chars
        )
        if hub.hub_improving_review
        else None
    )
    improver = improving_run.Improver(
        res.engine, QueueClient(res.nc), hub, brain_wake, wake, reviewer=reviewer
    )
    await brain.start(res, loops, hub, brain_wake, contemplator, improver)
    return Own(
        goals=goals,
        hub=brain_hub,
        proposals=contemplation_ops.Proposals(res.engine, wake, brain_wake),
        findings=improving_ops.Findings(res.engine),
        hooks=hooks,
    )


SPEC: Final = ServiceSpec(
    name="hubfsm",
    rpc="hub",
    description="The hub's brain: goals backlog, hub state machine, decomposition, healing.",
    version=__version__,
    metadata=tables.metadata,
    migrations=Path(__file__).parent / "migrations",
    settings=HubSettings,
    build=build,
    routers=(
        api.goals,
        brain_api.hub,
        proposal_api.proposals,
        findings_api.findings,
        findings_api.cycles,
        webhook_api.webhooks,
    ),
    samplers=(meters.sampler,),
)


def create_app(settings: CommonSettings) -> FastAPI:
    return build_app(SPEC, settings)
