"""The hub brain's cycles (hub-inventory 4.5) against the real services (queue, scheduler,
llm-registry and the hub, in this process) at millisecond settings, each driven by what the
running system shows, never by writing the hub's state:

- resting -> executing -> resting: a goal submitted, then cancelled, through the goal routes;
- resting -> improving -> contemplating -> resting: no goals, a contemplation cycle due, the
  model's proposal stored;
- -> healing -> resting from resting, executing, improving (its scan waiting for an agent)
  and contemplating (its model call held): three tasks
  claimed by an agent the scheduler never heard of go stuck, the health monitor finds them
  critical and wakes the brain, healing requeues them and rests.
"""

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client

from agentcom_common import micro
from agentcom_common.contracts.task import Claimed, ClaimTask
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import eventually, running
from agentcom_hubfsm.app import create_app as hub_app
from agentcom_hubfsm.settings import HubSettings
from agentcom_llm_registry.app import create_app as registry_app
from agentcom_llm_registry.settings import LlmSettings
from agentcom_queue.app import create_app as queue_app
from agentcom_scheduler.app import create_app as scheduler_app
from agentcom_scheduler.settings import SchedulerSettings
from fake_llm import FakeLLM

Json = dict[str, Any]
NEVER = timedelta(hours=1)
PROPOSAL = """<proposals><proposal>
  <title>Cache the catalogue</title>
  <problem>checkout is slow</problem>
  <solution>cache the catalogue</solution>
  <rationale>the catalogue is read on every request</rationale>
  <why_now>run latency p95 rose</why_now>
  <why_not>a cache can serve stale prices</why_not>
  <impact>high</impact>
  <effort>low</effort>
  <dependencies><dependency>none</dependency></dependencies>
  <related_files><file>app.py</file></related_files>
  <success_criteria><criterion>the catalogue is read once a minute</criterion></success_criteria>
</proposal></proposals>"""
FAST_HUB: Json = {
    "hub_tick_interval": timedelta(milliseconds=50),
    # a loaded machine must not make the brain lose its lead (a run is then resumed, slower)
    "hub_leader_interval": timedelta(seconds=1),
    "hub_health_interval": timedelta(milliseconds=100),
    "hub_health_timeout": timedelta(seconds=2),
    "hub_stuck_task_after": timedelta(milliseconds=300),
    "hub_healing_cooldown": NEVER,  # one healing run per test
    "hub_goal_sweep": timedelta(milliseconds=100),
    "hub_llm_backoff": NEVER,  # a goal whose plan the fake cannot make stays open, quietly
    "hub_contemplation_interval": NEVER,  # no contemplation unless a test makes it due
    # one proposal pending stops further cycles: one cycle per test
    "hub_contemplation_max_proposals": 1,
}
CONTEMPLATE: Json = {"hub_contemplation_interval": timedelta(milliseconds=1)}


@dataclass
class Thinker(FakeLLM):
    """Contemplation prompts get one proposal; anything else (the planner) gets prose, which
    plans nothing (a test that needs a goal open holds the model)."""

    contemplations: int = 0
    plans: list[str] = field(default_factory=list[str])

    def answer(self, body: Json) -> tuple[str, Json | None]:
        messages: list[Json] = body["messages"]
        if "thinking about what to build next" in messages[0]["content"]:
            self.contemplations += 1
            return PROPOSAL, None
        return "I would rather not plan this.", None


@dataclass
class Stack:
    hub: httpx.AsyncClient
    queue: httpx.AsyncClient
    model: Thinker
    origin: Path


Start = Callable[..., contextlib.AbstractAsyncContextManager[Stack]]


@pytest.fixture
async def model() -> AsyncGenerator[Thinker]:
    thinker = Thinker("thinker")
    await thinker.start()
    yield thinker
    if thinker.hold is not None:
        thinker.hold.set()  # a held call would keep the server from stopping
    await thinker.stop()


@pytest.fixture
def stack(
    settings: CommonSettings, admin_token: str, tmp_path: Path, model: Thinker, repos: Any
) -> Start:
    origin = repos.origin(tmp_path, {"README.md": "# Shop\n", "app.py": "def main(): ...\n"})
    base = settings.model_dump()
    scheduler = SchedulerSettings.model_validate(
        base  # its own stranded-task sweeps stay out of the way: healing's signal is under test
        | {"scheduler_working_offline_timeout": NEVER, "scheduler_accept_timeout": NEVER}
    )
    llm = LlmSettings.model_validate(
        base
        | {
            "llm_tiers": {"trivial": ["think"], "standard": ["think"], "complex": ["think"]},
            "llm_health_interval": timedelta(milliseconds=100),
            "llm_ledger_dir": str(tmp_path / "ledger"),
        }
    )

    @contextlib.asynccontextmanager
    async def start(**hub_settings: Any) -> AsyncGenerator[Stack]:
        hub = HubSettings.model_validate(
            base
            | {"hub_data_dir": tmp_path / "hub", "hub_contemplation_repos": [str(origin)]}
            | FAST_HUB
            | hub_settings
        )
        async with (
            running(queue_app(settings), "http://queue") as q,
            running(scheduler_app(scheduler), "http://scheduler"),
            running(registry_app(llm), "http://llm") as registry,
            running(hub_app(hub), "http://hubfsm") as h,
        ):
            for client in (q, registry, h):
                client.headers["Authorization"] = f"Bearer {admin_token}"
            body = {"id": "thinker", "provider": "ollama", "base_url": model.url}
            added = await registry.post("/api/llm/endpoints", json=body | {"classes": ["think"]})
            assert added.status_code == 201, added.text
            checked = await registry.post("/api/llm/endpoints/thinker/check")
            assert checked.json()["health"] == "healthy", checked.text
            yield Stack(h, q, model, origin)

    return start


async def moves(s: Stack) -> list[tuple[str, str]]:
    page = (await s.hub.get("/api/hub/history", params={"limit": 50})).json()["moves"]
    return [(m["to_state"], m["reason"]) for m in reversed(page)]


async def path_begins(s: Stack, *expected: str) -> list[tuple[str, str]]:
    """The hub's moves once they begin with the states `expected` (the first, resting, is
    the hub's start)."""

    async def begun() -> list[tuple[str, str]]:
        found = await moves(s)
        assert [to for to, _ in found][: len(expected)] == list(expected), found
        return found

    return await eventually(begun, timeout=30)


async def in_state(s: Stack, state: str) -> None:
    async def there() -> None:
        got = (await s.hub.get("/api/hub/state")).json()
        assert got["state"] == state, got

    await eventually(there, timeout=30)


async def asked(model: Thinker) -> None:
    async def called() -> None:
        assert model.chats, "no model call yet"

    await eventually(called, timeout=30)


async def submit_goal(s: Stack) -> str:
    made = await s.hub.post(
        "/api/goals",
        json={
            "title": "Greeting",
            "description": "app.py greets people",
            "success_criteria": ["greet works"],
            "repo": str(s.origin),
        },
    )
    assert made.status_code == 201, made.text
    return made.json()["id"]


async def stuck_tasks(s: Stack, nc: Client) -> list[str]:
    """Three tasks claimed through the queue's RPC by an agent the scheduler never heard of:
    they go stuck, a critical issue."""
    ids: list[str] = []
    for i in range(3):
        made = await s.queue.post("/api/tasks", json={"description": f"t{i}", "max_retries": 2})
        assert made.status_code == 201, made.text
        got = await micro.call(nc, "queue", "claim", ClaimTask(agent_id="ghost"), Claimed)
        assert got.task is not None
        ids.append(got.task.id)
    return ids


async def healed(s: Stack, ids: list[str]) -> Json:
    """The healing run that requeued `ids`, once it ended and the hub rested after it."""

    async def ended() -> Json:
        runs = (await s.hub.get("/api/hub/healing")).json()["runs"]
        assert len(runs) == 1, ((await s.hub.get("/api/hub/health")).json(), await moves(s))
        (run,) = runs
        assert run["ended_at"], run
        return run

    run = await eventually(ended, timeout=60)
    assert run["outcome"] == "healed", run
    requeued = [a["target"] for a in run["actions"] if a["action"] == "requeue_stuck_task"]
    assert sorted(requeued) == sorted(ids), run
    for task_id in ids:
        task = (await s.queue.get(f"/api/tasks/{task_id}")).json()
        assert (task["state"], task["retry_count"]) == ("queued", 1), task
    return run


def after_healing(found: list[tuple[str, str]], came: str) -> None:
    """The hub went from `came` to healing on the critical issue, then healing rested it."""
    at = next(i for i, (to, why) in enumerate(found) if (to, why) == ("healing", "critical_issues"))
    assert found[at - 1][0] == came, found
    assert found[at + 1][0] == "resting", found
    assert found[at + 1][1].startswith("healing healed:"), found


async def test_resting_executing_resting(stack: Start, model: Thinker) -> None:
    model.hold = asyncio.Event()  # the goal is planned while the model holds: it stays open
    async with stack() as s:
        goal_id = await submit_goal(s)
        await path_begins(s, "resting", "executing")
        await asked(s.model)  # the planner waits on the model: the goal is open
        cancelled = await s.hub.post(f"/api/goals/{goal_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        found = await path_begins(s, "resting", "executing", "resting")
        assert found[1:3] == [("executing", "goals_open"), ("resting", "goals_done")], found


async def test_resting_improving_contemplating_resting(stack: Start, model: Thinker) -> None:
    async with stack(**CONTEMPLATE) as s:
        found = await path_begins(s, "resting", "improving", "contemplating", "resting")
        assert [why for _, why in found[1:3]] == ["nothing_to_do", "improving_done"], found
        pending = (await s.hub.get("/api/hub/proposals", params={"state": "pending"})).json()
        assert [p["title"] for p in pending["proposals"]] == ["Cache the catalogue"]
        assert model.contemplations == 1


async def test_healing_from_resting(stack: Start, nc: Client) -> None:
    async with stack() as s:
        ids = await stuck_tasks(s, nc)
        await healed(s, ids)
        found = await path_begins(s, "resting", "healing", "resting")
        after_healing(found, "resting")


async def test_healing_from_executing(stack: Start, model: Thinker, nc: Client) -> None:
    model.hold = asyncio.Event()  # the goal is planned while the model holds: it stays open
    async with stack() as s:
        await submit_goal(s)
        await in_state(s, "executing")
        ids = await stuck_tasks(s, nc)
        await healed(s, ids)
        found = await path_begins(s, "resting", "executing", "healing", "resting")
        after_healing(found, "executing")
        # the goal is still open: the hub goes back to work
        await path_begins(s, "resting", "executing", "healing", "resting", "executing")


async def test_healing_from_improving(stack: Start, nc: Client) -> None:
    # an improving cycle waits for its scan task, which no agent here can take: the hub stays
    # improving until the stuck tasks come
    async with stack(
        hub_improving_enabled=True,
        hub_improving_repos=[],  # the contemplation repos
        hub_improving_interval=timedelta(milliseconds=1),
    ) as s:
        await in_state(s, "improving")
        ids = await stuck_tasks(s, nc)
        await healed(s, ids)
        found = await path_begins(s, "resting", "improving", "healing", "resting")
        after_healing(found, "improving")


async def test_healing_from_contemplating(stack: Start, model: Thinker, nc: Client) -> None:
    model.hold = asyncio.Event()  # the contemplation cycle waits on the model
    async with stack(**CONTEMPLATE) as s:
        await in_state(s, "contemplating")
        await asked(model)  # the cycle is in its model call
        ids = await stuck_tasks(s, nc)
        await healed(s, ids)
        found = await path_begins(s, "resting", "improving", "contemplating", "healing")
        after_healing(found, "contemplating")
        assert model.contemplations == 0  # healing cancelled the cycle while it waited
