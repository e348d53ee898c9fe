"""Contemplation end to end at millisecond settings, against the real services (queue,
scheduler, llm-registry and the hub, in this process) and a fake model behind the gateway: with
no goals the brain goes resting -> improving -> contemplating, the model's `<proposals>` reply
is read, the out-of-scope and over-the-cap ones are dropped, the rest are stored and wait for a
person (never accepted by the hub); accepting one makes a goal, rejecting one records why, and
the next cycle's prompt carries the reason."""

import contextlib
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import auth
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import eventually, running
from agentcom_hubfsm.app import create_app as hub_app
from agentcom_hubfsm.settings import HubSettings
from agentcom_llm_registry.app import create_app as registry_app
from agentcom_llm_registry.settings import LlmSettings
from agentcom_queue.app import create_app as queue_app
from agentcom_scheduler.app import create_app as scheduler_app
from fake_llm import FakeLLM

Json = dict[str, Any]
NEVER = timedelta(hours=1)
FILES = {
    "README.md": "# Shop\nA tiny web shop.\n",
    "src/shop/app.py": "def main(): ...\n",
    "src/shop/db.py": "def connect(): ...\n",
    ".agentcom/out-of-scope.txt": "# topics nobody wants proposed\nkubernetes\n",
}
FAST_HUB: Json = {
    "hub_tick_interval": timedelta(milliseconds=50),
    "hub_leader_interval": timedelta(milliseconds=200),
    "hub_health_interval": NEVER,  # no assessment: healing stays out of the way
    "hub_goal_sweep": timedelta(milliseconds=100),
    "hub_llm_backoff": NEVER,  # a goal whose plan the fake cannot make waits, quietly
}


def proposal(title: str, extra: str = "") -> str:
    return f"""<proposal>
  <title>{title}</title>
  <problem>checkout is slow{extra}</problem>
  <solution>cache the catalogue</solution>
  <rationale>the catalogue is read on every request</rationale>
  <why_now>run latency p95 rose</why_now>
  <why_not>a cache can serve stale prices</why_not>
  <impact>high</impact>
  <effort>low</effort>
  <dependencies><dependency>none</dependency></dependencies>
  <related_files><file>src/shop/app.py</file></related_files>
  <success_criteria><criterion>the catalogue is read once a minute</criterion></success_criteria>
</proposal>"""


FIRST_REPLY = (
    "<think>the analysis says the queue is fine</think>Here they are:\n<proposals>"
    + proposal("Cache the catalogue")
    + proposal("Index the orders table")
    + proposal("Move the shop to Kubernetes", " and kubernetes would fix it")  # out of scope
    + proposal("Add a health route")
    + proposal("Shard the database")  # a fifth: past the cap of 3 once one is dropped
    + "</proposals>"
)
SECOND_REPLY = "<proposals>" + proposal("Add request tracing") + "</proposals>"


@dataclass
class Thinker(FakeLLM):
    """A fake model that answers contemplation prompts from a script, in turn; anything else
    (the planner, once a proposal is a goal) gets prose, which plans nothing."""

    script: list[str] = field(default_factory=list[str])
    prompts: list[str] = field(default_factory=list[str])

    def answer(self, body: Json) -> tuple[str, Json | None]:
        messages: list[Json] = body["messages"]
        if "thinking about what to build next" not in messages[0]["content"]:
            return "I would rather not plan this.", None
        self.prompts.append(messages[-1]["content"])
        return self.script[min(len(self.prompts), len(self.script)) - 1], None


@dataclass
class Stack:
    hub: httpx.AsyncClient
    model: Thinker


Start = Callable[..., contextlib.AbstractAsyncContextManager[Stack]]


@pytest.fixture
async def model() -> AsyncGenerator[Thinker]:
    thinker = Thinker("thinker", script=[FIRST_REPLY, SECOND_REPLY])
    await thinker.start()
    yield thinker
    await thinker.stop()


@pytest.fixture
def stack(
    settings: CommonSettings, admin_token: str, tmp_path: Path, model: Thinker, repos: Any
) -> Start:
    origin = repos.origin(tmp_path, FILES)
    base = settings.model_dump()
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
            running(queue_app(settings), "http://queue"),
            running(scheduler_app(settings), "http://scheduler"),
            running(registry_app(llm), "http://llm") as registry,
            running(hub_app(hub), "http://hubfsm") as h,
        ):
            for client in (registry, h):
                client.headers["Authorization"] = f"Bearer {admin_token}"
            body = {"id": "thinker", "provider": "ollama", "base_url": model.url}
            listed = (await registry.get("/api/llm/endpoints")).json()
            if not any(e["id"] == "thinker" for e in listed):  # the second start has it
                added = await registry.post(
                    "/api/llm/endpoints", json=body | {"classes": ["think"]}
                )
                assert added.status_code == 201, added.text
            checked = await registry.post("/api/llm/endpoints/thinker/check")
            assert checked.json()["health"] == "healthy", checked.text
            yield Stack(h, model)

    return start


async def pending(s: Stack, n: int) -> list[Json]:
    async def stored() -> list[Json]:
        got = await s.hub.get("/api/hub/proposals", params={"state": "pending"})
        assert got.status_code == 200, got.text
        found: list[Json] = got.json()["proposals"]
        assert len(found) == n, found
        return found

    return await eventually(stored, timeout=30)


async def moves(s: Stack) -> list[tuple[str, str]]:
    page = (await s.hub.get("/api/hub/history", params={"limit": 50})).json()["moves"]
    return [(m["to_state"], m["reason"]) for m in reversed(page)]


async def resting_after_contemplation(s: Stack) -> None:
    async def done() -> None:
        assert ("contemplating", "improving_done") in await moves(s)
        state = (await s.hub.get("/api/hub/state")).json()
        assert state["state"] in ("resting", "executing"), state

    await eventually(done, timeout=30)


async def test_proposals_wait_for_a_person_and_a_rejection_feeds_the_next_cycle(
    stack: Start, model: Thinker, engine: AsyncEngine
) -> None:
    # cycles as often as they may come: only the pending proposals hold the next one back
    async with stack(hub_contemplation_interval=timedelta(milliseconds=1)) as s:
        first = await pending(s, 3)
        await resting_after_contemplation(s)
        path = [to for to, _ in await moves(s)]
        assert path[:4] == ["resting", "improving", "contemplating", "resting"], path
        assert [p["title"] for p in reversed(first)] == [
            "Cache the catalogue",
            "Index the orders table",
            "Add a health route",
        ]  # the Kubernetes one is out of scope (the repo's file), the fifth past the cap
        cached = next(p for p in first if p["title"] == "Cache the catalogue")
        assert cached["why_not"] == "a cache can serve stale prices"
        assert cached["related_files"] == ["src/shop/app.py"]
        assert cached["goal_id"] is None
        assert cached["decided_by"] is None
        [prompt] = model.prompts  # three wait for a person: no second cycle piles up more
        for part in (
            "- kubernetes",  # the out-of-scope list, told to the model
            "- queue depth trend:",  # the scalability analysis
            "- agent utilisation: 0 of 0 agents busy",
            "improving -> contemplating: improving_done",  # the hub's own history
            "src/shop/db.py",  # the repo
        ):
            assert part in prompt, part
        assert "was rejected" not in prompt

        # a viewer may read, not decide
        viewer_token = (await auth.issue(engine, auth.Role.VIEWER, "test viewer")).token
        viewer = {"Authorization": f"Bearer {viewer_token}"}
        read = await s.hub.get("/api/hub/proposals", headers=viewer)
        assert read.status_code == 200, read.text
        forbidden = await s.hub.post(f"/api/hub/proposals/{cached['id']}/accept", headers=viewer)
        assert forbidden.status_code == 403, forbidden.text

        indexed = next(p for p in first if p["title"] == "Index the orders table")
        no_reason = await s.hub.post(f"/api/hub/proposals/{indexed['id']}/reject", json={})
        assert no_reason.status_code == 422, no_reason.text
        assert no_reason.json()["field"] == "reason"
        rejected = await s.hub.post(
            f"/api/hub/proposals/{indexed['id']}/reject",
            json={"reason": "the orders table has 40 rows; an index buys nothing"},
        )
        assert rejected.status_code == 200, rejected.text
        assert rejected.json()["state"] == "rejected"

        # two pending now: the next cycle comes, told the rejection
        await eventually(lambda: prompts_at_least(model, 2), timeout=30)
        second = model.prompts[1]
        assert (
            '"Index the orders table" was rejected: the orders table has 40 rows; '
            "an index buys nothing" in second
        )
        assert "- Add a health route:" in second  # still pending: not to be repeated
        titles = {p["title"] for p in await pending(s, 3)}
        assert titles == {"Cache the catalogue", "Add a health route", "Add request tracing"}

        accepted = await s.hub.post(f"/api/hub/proposals/{cached['id']}/accept")
        assert accepted.status_code == 200, accepted.text
        goal_id = accepted.json()["goal_id"]
        assert accepted.json()["state"] == "accepted"
        goal = (await s.hub.get(f"/api/goals/{goal_id}")).json()
        assert (goal["title"], goal["source"], goal["priority"]) == (
            "Cache the catalogue",
            "proposal",
            "low",
        )
        assert goal["success_criteria"] == ["the catalogue is read once a minute"]
        assert "Problem: checkout is slow" in goal["description"]
        again = await s.hub.post(f"/api/hub/proposals/{cached['id']}/reject", json={"reason": "x"})
        assert again.status_code == 409, again.text
        assert again.json()["error"] == "transition_refused"
        missing = await s.hub.post("/api/hub/proposals/prop-0000000000000000/accept")
        assert missing.status_code == 404, missing.text


async def prompts_at_least(model: Thinker, n: int) -> None:
    assert len(model.prompts) >= n, model.prompts
