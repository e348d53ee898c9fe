"""-> healing -> resting from every state: a critical issue moves the hub to healing whatever it
was doing, the run (its entry work) ends it in resting with its report; and a hub that may not
heal (cooling down) stays where it is. Driven one brain pass at a time."""

import asyncio
from datetime import timedelta

import pytest
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common.contracts.alert import Severity
from agentcom_common.contracts.health import IssueCategory
from agentcom_common.contracts.hub import HubState
from agentcom_common.settings import CommonSettings
from agentcom_hubfsm.brain import loop, ops, store
from agentcom_hubfsm.healing import run, store as healing_store
from agentcom_hubfsm.health import reports
from agentcom_hubfsm.settings import HubSettings

H = HubState
ROUTES = {
    H.RESTING: [],
    H.EXECUTING: [H.EXECUTING],
    H.IMPROVING: [H.IMPROVING],
    H.CONTEMPLATING: [H.IMPROVING, H.CONTEMPLATING],
}


async def put(engine: AsyncEngine, path: list[HubState]) -> None:
    for to in path:
        async with engine.begin() as conn:
            row = await store.load(conn, lock=True)
            await store.move(
                conn, row, to, reason="test", actor="test", watchdog=timedelta(hours=1)
            )


async def report_critical(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await reports.report_issue(
            conn,
            key="high_failure_rate:test",
            source="test",
            severity=Severity.CRITICAL,
            category=IssueCategory.HIGH_FAILURE_RATE,
            summary="everything fails",
            evidence={},
        )


def brain(engine: AsyncEngine, nc: Client, policy: healing_store.Policy) -> loop.Brain:
    return loop.Brain(
        engine,
        nc,
        instance="test",
        wake=asyncio.Event(),
        tick=timedelta(hours=1),  # passes run only when the test calls step()
        watchdog=timedelta(hours=1),
        healing=policy,
    )


@pytest.mark.parametrize("state", list(ROUTES))
async def test_a_critical_issue_heals_from_any_state_and_the_run_ends_in_resting(
    engine: AsyncEngine, nc: Client, settings: CommonSettings, state: HubState
) -> None:
    hub = HubSettings.model_validate(settings.model_dump() | {"hub_health_timeout": 0.5})
    await put(engine, ROUTES[state])
    await report_critical(engine)
    b = brain(engine, nc, healing_store.Policy.of(hub))
    assert (await b.step()).state is H.HEALING

    # the run: nothing answers here (no queue, scheduler or llm-registry), so it finds them
    # degraded too (warnings); every issue of these is alert-only
    await run.Healer(engine, nc, hub, asyncio.Event()).run()
    h = ops.Hub(engine, asyncio.Event(), timedelta(hours=1), healing_store.Policy.of(hub))
    moves = (await ops.history(h, None, 10)).moves
    assert [m.to_state for m in moves[:3]] == [H.RESTING, H.HEALING, state]
    assert moves[0].reason.startswith("healing healed:")
    runs = (await ops.healing(h, None, 5)).runs
    assert [(r.outcome, r.ended_at is not None) for r in runs] == [("healed", True)]
    assert {a.action for a in runs[0].actions} == {"alert"}
    assert "high_failure_rate:test" in {i.key for i in runs[0].issues}

    # cooling down now (the default 5 minutes): the same critical issue moves nothing
    assert (await b.step()).state is H.RESTING
    health = await ops.health(h)
    assert health.critical >= 1
    assert health.healing_cooldown_until is not None
