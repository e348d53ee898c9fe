"""The hub's healing end to end against the real services (queue, scheduler, llm-registry and
the hub, in this process) at millisecond settings: stuck tasks requeued, a dead tier re-probed
and recovered or routed to its fallback, a hung remedy ended by the healing watchdog, the
cooldown and the attempt window, and a dry run that changes nothing."""

import contextlib
import json
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import micro, subjects
from agentcom_common.contracts.alert import Severity
from agentcom_common.contracts.health import IssueCategory
from agentcom_common.contracts.llm import EndpointList, ListEndpoints
from agentcom_common.contracts.task import Claimed, ClaimTask
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import eventually, running
from agentcom_hubfsm.app import create_app as hub_app
from agentcom_hubfsm.health import reports
from agentcom_hubfsm.settings import HubSettings
from agentcom_llm_registry.app import create_app as registry_app
from agentcom_llm_registry.settings import LlmSettings
from agentcom_queue.app import create_app as queue_app
from agentcom_scheduler.app import create_app as scheduler_app
from agentcom_scheduler.settings import SchedulerSettings
from fake_llm import FakeLLM

Json = dict[str, Any]
NEVER = timedelta(hours=1)
TIERS = {"trivial": ["small"], "standard": ["big"], "complex": ["big"]}
FAST_HUB: Json = {
    "hub_tick_interval": timedelta(milliseconds=50),
    "hub_leader_interval": timedelta(milliseconds=200),
    "hub_health_interval": timedelta(milliseconds=100),
    "hub_health_timeout": timedelta(seconds=2),
    "hub_stuck_task_after": timedelta(milliseconds=300),
    "hub_healing_cooldown": NEVER,  # one run per test unless a test says otherwise
    "hub_healing_reprobe_backoff": [0.05, 0.05, 0.05],
}


@dataclass
class Stack:
    hub: httpx.AsyncClient
    queue: httpx.AsyncClient
    llm: httpx.AsyncClient
    small: FakeLLM  # the only endpoint of tier trivial
    big: FakeLLM


Start = Callable[..., contextlib.AbstractAsyncContextManager[Stack]]


@pytest.fixture
def stack(settings: CommonSettings, admin_token: str, tmp_path: Path) -> Start:
    @contextlib.asynccontextmanager
    async def start(**hub_settings: Any) -> AsyncGenerator[Stack]:
        base = settings.model_dump()
        scheduler = SchedulerSettings.model_validate(
            base  # its own stranded-task sweeps stay out of the way: healing is under test
            | {"scheduler_working_offline_timeout": NEVER, "scheduler_accept_timeout": NEVER}
        )
        llm = LlmSettings.model_validate(
            base
            | {
                "llm_tiers": TIERS,
                "llm_health_interval": timedelta(milliseconds=50),
                "llm_unhealthy_after": 2,
                "llm_recover_backoff_max": timedelta(milliseconds=100),
                "llm_ledger_dir": str(tmp_path / "ledger"),
            }
        )
        hub = HubSettings.model_validate(
            base | {"hub_data_dir": tmp_path / "hub"} | FAST_HUB | hub_settings
        )
        small, big = FakeLLM("small"), FakeLLM("big")
        await small.start()
        await big.start()
        try:
            async with (
                running(queue_app(settings), "http://queue") as q,
                running(scheduler_app(scheduler), "http://scheduler"),
                running(registry_app(llm), "http://llm") as registry,
                running(hub_app(hub), "http://hubfsm") as h,
            ):
                for client in (q, registry, h):
                    client.headers["Authorization"] = f"Bearer {admin_token}"
                for name, server in (("small", small), ("big", big)):
                    body = {"id": name, "provider": "ollama", "base_url": server.url}
                    added = await registry.post(
                        "/api/llm/endpoints", json=body | {"classes": [name]}
                    )
                    assert added.status_code == 201, added.text
                yield Stack(h, q, registry, small, big)
        finally:
            await small.stop()
            await big.stop()

    return start


async def held_by_a_ghost(s: Stack, nc: Client, n: int) -> list[str]:
    """`n` tasks claimed by an agent the scheduler never heard of: they will be stuck."""
    ids: list[str] = []
    for i in range(n):
        made = await s.queue.post("/api/tasks", json={"description": f"t{i}", "max_retries": 2})
        assert made.status_code == 201, made.text
        got = await micro.call(nc, "queue", "claim", ClaimTask(agent_id="ghost"), Claimed)
        assert got.task is not None
        ids.append(got.task.id)
    return ids


async def runs(s: Stack) -> list[Json]:
    return (await s.hub.get("/api/hub/healing")).json()["runs"]


async def ended_runs(s: Stack, n: int) -> list[Json]:
    async def ended() -> list[Json]:
        found = await runs(s)
        assert len(found) >= n, found
        assert all(r["ended_at"] for r in found), found
        assert (await s.hub.get("/api/hub/state")).json()["state"] == "resting"
        return found

    return await eventually(ended, timeout=30)


async def moves(s: Stack) -> list[tuple[str, str]]:
    page = (await s.hub.get("/api/hub/history", params={"limit": 50})).json()["moves"]
    return [(m["to_state"], m["reason"]) for m in reversed(page)]


async def test_three_stuck_tasks_are_healed_requeued_and_the_hub_rests(
    stack: Start, nc: Client
) -> None:
    async with stack() as s:
        ids = await held_by_a_ghost(s, nc, 3)
        (run,) = await ended_runs(s, 1)

        assert run["outcome"] == "healed", run
        stuck = next(i for i in run["issues"] if i["key"] == "stuck_tasks")
        assert stuck["severity"] == "critical"
        requeued = [a for a in run["actions"] if a["action"] == "requeue_stuck_task"]
        assert sorted(a["target"] for a in requeued) == sorted(ids)
        assert {a["outcome"] for a in requeued} == {"done"}
        assert requeued[0]["evidence"]["agent_state"] == "unknown"
        for task_id in ids:
            task = (await s.queue.get(f"/api/tasks/{task_id}")).json()
            assert (task["state"], task["retry_count"]) == ("queued", 1)
        assert [to for to, _ in await moves(s)] == ["resting", "healing", "resting"]
        assert (await moves(s))[-1][1].startswith("healing healed:")


async def test_a_dry_run_changes_nothing_and_says_what_it_would_do(
    stack: Start, nc: Client
) -> None:
    async with stack(hub_healing_dry_run=True) as s:
        ids = await held_by_a_ghost(s, nc, 3)
        (run,) = await ended_runs(s, 1)

        assert run["outcome"] == "dry_run"
        would = [a for a in run["actions"] if a["action"] == "requeue_stuck_task"]
        assert {(a["outcome"], a["dry_run"]) for a in would} == {("would_do", True)}
        assert all("dry run: would requeue task" in a["detail"] for a in would)
        for task_id in ids:
            task = (await s.queue.get(f"/api/tasks/{task_id}")).json()
            assert (task["state"], task["retry_count"], task["generation"]) == ("assigned", 0, 1)

        # the issue is still critical, but healing cools down: it stays resting
        async def cooling() -> None:
            health = (await s.hub.get("/api/hub/health")).json()
            assert health["critical"] >= 1, health
            assert health["healing_cooldown_until"], health

        await eventually(cooling)
        await assessed_twice_more(s)
        assert len(await runs(s)) == 1
        assert (await s.hub.get("/api/hub/state")).json()["state"] == "resting"


async def assessed_twice_more(s: Stack) -> None:
    """Two more health assessments (each a chance for the brain to heal again) have run."""
    first = (await s.hub.get("/api/hub/health")).json()["assessed_at"]

    async def later(seen: list[str]) -> None:
        now = (await s.hub.get("/api/hub/health")).json()["assessed_at"]
        if now != (seen[-1] if seen else first):
            seen.append(now)
        assert len(seen) >= 2

    seen: list[str] = []
    await eventually(lambda: later(seen))


async def test_the_attempts_in_the_window_are_respected(stack: Start, nc: Client) -> None:
    async with stack(
        hub_healing_dry_run=True,
        hub_healing_cooldown=timedelta(0),
        hub_healing_attempts=2,
        hub_healing_window=NEVER,
    ) as s:
        await held_by_a_ghost(s, nc, 3)

        async def exhausted() -> None:
            health = (await s.hub.get("/api/hub/health")).json()
            assert health["healing_exhausted"], health
            assert health["healing_attempts"] == 2, health

        await eventually(exhausted, timeout=30)
        await ended_runs(s, 2)
        await assessed_twice_more(s)
        assert [r["outcome"] for r in await runs(s)] == ["dry_run", "dry_run"]


async def dead_tier(s: Stack) -> None:
    """Tier trivial's only endpoint stops answering its health checks."""
    s.small.health_status = 500


async def test_a_dead_tier_is_reprobed_and_recovers(stack: Start, nc: Client) -> None:
    async with stack(hub_healing_reprobe_backoff=[0.3, 0.3, 0.3, 0.3, 0.3]) as s:
        await dead_tier(s)

        async def healing() -> None:
            assert (await s.hub.get("/api/hub/state")).json()["state"] == "healing"

        await eventually(healing, timeout=30)

        async def run_opened() -> None:
            # the run holds the issues it was opened with; before it exists, an assessment
            # taken after the endpoint came back would find nothing to heal (CI saw that)
            assert len(await runs(s)) == 1

        await eventually(run_opened, timeout=30)
        s.small.health_status = 200  # it comes back while healing re-probes it
        (run,) = await ended_runs(s, 1)

        acts = [(a["action"], a["outcome"]) for a in run["actions"] if a["target"] == "trivial"]
        assert acts == [("reprobe_endpoints", "done")], run
        assert "healthy again" in run["actions"][0]["detail"]
        listed = await micro.call(nc, "llm", "endpoints", ListEndpoints(), EndpointList)
        assert listed.fallbacks == {}


async def test_a_tier_that_stays_dead_is_routed_to_its_fallback_and_said_so(
    stack: Start, nc: Client
) -> None:
    async with stack() as s:
        await dead_tier(s)
        (run,) = await ended_runs(s, 1)

        acts = {a["action"]: a for a in run["actions"] if a["target"] == "trivial"}
        assert acts["reprobe_endpoints"]["outcome"] == "failed"
        assert (
            "no endpoint of tier trivial recovered after 3 probes"
            in (acts["reprobe_endpoints"]["detail"])
        )
        assert acts["route_to_fallback"]["outcome"] == "done"
        assert "tier trivial routed to classes big until" in acts["route_to_fallback"]["detail"]
        assert run["outcome"] == "healed"  # handled: the tier's calls go one tier up
        listed = await micro.call(nc, "llm", "endpoints", ListEndpoints(), EndpointList)
        assert list(listed.fallbacks) == ["trivial"]
        routed = (await s.llm.get("/api/llm/route", params={"tier": "trivial"})).json()
        assert routed["endpoint_id"] == "big"

        async def said_so() -> None:
            health = (await s.hub.get("/api/hub/health")).json()
            tier = next(i for i in health["issues"] if i["key"] == "unhealthy_endpoints:trivial")
            assert tier["severity"] == "warning", tier
            assert tier["evidence"]["fallback_until"], tier

        await eventually(said_so)


async def test_a_hung_remedy_is_ended_by_the_watchdog_with_a_critical_alert(
    stack: Start, nc: Client
) -> None:
    fired = await nc.subscribe(subjects.HUB_WATCHDOG_FIRED)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
    ended = await nc.subscribe(subjects.HUB_HEALING_ENDED)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
    async with stack(
        hub_healing_reprobe_backoff=[3600],  # the re-probe waits far past the watchdog
        hub_healing_watchdog=timedelta(milliseconds=500),
    ) as s:
        await dead_tier(s)
        (run,) = await ended_runs(s, 1)

        assert run["outcome"] == "watchdog"
        assert "watchdog" in run["report"]
        alert = json.loads((await fired.next_msg(timeout=10)).data)
        assert (alert["watchdog"], alert["severity"], alert["from_state"]) == (
            "healing",
            "critical",
            "healing",
        )
        end = json.loads((await ended.next_msg(timeout=10)).data)
        assert (end["outcome"], end["severity"]) == ("watchdog", "critical")
        assert (await moves(s))[-2:] == [("healing", "critical_issues"), ("resting", "watchdog")]


async def test_a_failing_default_branch_opens_an_urgent_task_with_the_log_tail(
    stack: Start, engine: AsyncEngine
) -> None:
    async with stack() as s:
        async with engine.begin() as conn:  # as the webhooks report a failed check_run
            await reports.report_issue(
                conn,
                key="ci_failing:example.invalid/r:main:build",
                source="github",
                severity=Severity.CRITICAL,
                category=IssueCategory.CI_FAILING,
                summary="main of example.invalid/r fails CI (build)",
                evidence={
                    "repo": "https://example.invalid/r.git",
                    "branch": "main",
                    "check": "build",
                    "log_tail": "E   assert 1 == 2",
                },
            )
        (run,) = await ended_runs(s, 1)

        (opened,) = [a for a in run["actions"] if a["action"] == "open_diagnostic_task"]
        assert opened["outcome"] == "done", opened
        task_id = opened["detail"].split()[2]
        task = (await s.queue.get(f"/api/tasks/{task_id}")).json()
        assert (task["priority"], task["branch"]) == ("urgent", "main")
        assert "E   assert 1 == 2" in task["description"]
        assert task["metadata"]["source"] == "healing"
