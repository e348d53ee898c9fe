"""The hub killed with SIGKILL while it drives a goal, and started again (the issue's crash
tests): mid-planning, between submitting a goal's tasks to the queue and recording them, and
mid-verification. Each time the goal is not lost, no task is made twice, and the goal completes.

The hub is a real process (`python -m agentcom_hubfsm`); the queue and the llm-registry run in
this process, the registry's gateway calling a fake Ollama upstream that answers by who asks
(the planner: two dependent tasks; the judge: a gap until the follow-up task's result is shown,
then every criterion met). A pull worker claims and completes the tasks over the queue's RPC.
Each kill happens at a point the test can see, never after a guessed delay:
- planning: the upstream holds its answers (`FakeLLM.hold`); the kill comes once the planner's
  call has reached it;
- submitting: the test holds a SHARE lock on `hub.goal_tasks` (reads go on, writes wait); the
  kill comes once the queue lists the goal's tasks and the hub's INSERT of them waits on the
  lock;
- verifying: as planning, once the judge's call has reached the upstream.
"""

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common.settings import CommonSettings
from agentcom_common.testing import NatsServer, ServiceProcess, eventually, running
from agentcom_llm_registry.app import create_app as registry_app
from agentcom_llm_registry.settings import LlmSettings
from agentcom_queue.app import create_app as queue_app
from fake_llm import FakeLLM
from goal_fakes import pull_worker, verdict

pytestmark = pytest.mark.system

Json = dict[str, Any]

PLAN = {
    "summary": "a greeting, then its documentation",
    "tasks": [
        {
            "key": "code",
            "title": "Write the greeting",
            "description": "Create greeting.txt holding the word hello",
            "success_criteria": ["greeting.txt says hello"],
            "verification": ["grep -q hello greeting.txt"],
            "new_files": ["greeting.txt"],
            "estimated_tokens": 1000,
        },
        {
            "key": "docs",
            "title": "Document the greeting",
            "description": "Create GREETING.md saying what greeting.txt is for",
            "success_criteria": ["GREETING.md explains the greeting"],
            "verification": ["grep -q greeting GREETING.md"],
            "depends_on": ["code"],
            "new_files": ["GREETING.md"],
            "estimated_tokens": 500,
        },
    ],
}
GAP = "Write USAGE.md showing how to print the greeting"
TITLES = ["Write the greeting", "Document the greeting", GAP]  # the goal's tasks, in order


@dataclass
class ScriptedModel(FakeLLM):
    """The planner gets `PLAN`; the judge a gap on criterion 2 until it is shown the follow-up
    task, then a pass. It answers by what it is asked, not by how often: a hub killed while
    waiting leaves an answered call nobody reads."""

    asked: list[str] = field(default_factory=list[str])

    def answer(self, body: Json) -> tuple[str, Json | None]:
        system = str(body["messages"][0].get("content", ""))
        if "You plan work" in system:
            self.asked.append("plan")
            return json.dumps(PLAN), None
        assert "You check whether work" in system, system
        self.asked.append("judge")
        shown = str(body["messages"][1].get("content", ""))
        return (
            verdict(True, True) if f"### {GAP}" in shown else verdict(True, False, gap=GAP)
        ), None

    def calls(self, who: str) -> int:
        """Calls recorded so far by whose prompt they carry (recorded before any hold)."""
        marker = {"plan": "You plan work", "judge": "You check whether work"}[who]
        return sum(marker in str(c["messages"][0].get("content", "")) for c in self.chats)


@dataclass
class Stack:
    hub: ServiceProcess
    api: httpx.AsyncClient  # the hub's routes over its real socket (admin)
    queue: httpx.AsyncClient
    model: ScriptedModel
    repo: str

    async def restart(self) -> None:
        await asyncio.to_thread(self.hub.start)

    async def submit(self) -> str:
        submitted = await self.api.post(
            "/api/goals",
            json={
                "title": "Greeting",
                "description": "The repo has a greeting and says how to use it",
                "success_criteria": ["there is a greeting", "its use is documented"],
                "repo": self.repo,
            },
        )
        assert submitted.status_code == 201, submitted.text
        return str(submitted.json()["id"])

    async def goal(self, goal_id: str) -> Json:
        try:
            reply = await self.api.get(f"/api/goals/{goal_id}")
        except httpx.HTTPError as exc:  # a restart's first moments
            raise AssertionError(f"the hub is not answering: {exc!r}") from None
        assert reply.status_code == 200, reply.text
        return reply.json()

    async def tasks(self, goal_id: str) -> list[Json]:
        reply = await self.queue.get("/api/tasks", params={"goal_id": goal_id})
        return reply.json()["tasks"]

    async def completes(self, goal_id: str) -> Json:
        async def complete() -> Json:
            goal = await self.goal(goal_id)
            assert goal["state"] not in ("failed", "needs_review", "cancelled"), goal
            assert goal["state"] == "complete", goal
            return goal

        return await eventually(complete, timeout=60)

    async def check_once_each(self, goal_id: str) -> Json:
        """The goal completed, with each of its three tasks made once in the queue and
        recorded once on the goal."""
        goal = await self.completes(goal_id)
        tasks = await self.tasks(goal_id)
        titles = sorted(t["description"].split("\n", 1)[0] for t in tasks)
        assert titles == sorted(TITLES), tasks  # none twice, none missing
        assert sorted(t["task_id"] for t in goal["tasks"]) == sorted(t["id"] for t in tasks)
        assert {t["state"] for t in tasks} == {"completed"}, tasks
        assert goal["attempt"] == 1, goal  # the crash made no second plan
        assert [v["passed"] for v in goal["verifications"]] == [False, True], goal
        return goal


@pytest.fixture
async def worker(nc: Client) -> AsyncIterator[Callable[[], None]]:
    """Call it to start the pull worker; it stops at the test's end."""
    stop = asyncio.Event()
    started: list[asyncio.Task[None]] = []

    def start() -> None:
        started.append(asyncio.create_task(pull_worker(nc, stop)))

    try:
        yield start
    finally:
        stop.set()
        await asyncio.gather(*started)


@pytest.fixture
async def stack(
    settings: CommonSettings,
    nats_server: NatsServer,
    db_url: str,
    admin_token: str,
    repos: Any,
    tmp_path: Path,
) -> AsyncIterator[Stack]:
    llm = LlmSettings.model_validate(
        settings.model_dump()
        | {
            "llm_health_interval": timedelta(milliseconds=200),
            "llm_ledger_flush_interval": timedelta(milliseconds=50),
            "llm_ledger_dir": str(tmp_path / "ledger"),
        }
    )
    env = {
        "AGENTCOM_HUB_GOAL_SWEEP": "200ms",
        "AGENTCOM_HUB_LLM_BACKOFF": "100ms",
        "AGENTCOM_HUB_DATA_DIR": str(tmp_path / "hub"),
        "AGENTCOM_NATS_RECONNECT_WAIT": "50ms",
    }
    hub = ServiceProcess("hubfsm", nats_server.url, db_url, tmp_path / "hubfsm.log", env)
    origin = repos.origin(tmp_path, {"README.md": "# greetings\n"})
    model = ScriptedModel("ollama", models=["qwen3:8b"])
    await model.start()
    headers = {"Authorization": f"Bearer {admin_token}"}
    try:
        async with (
            running(queue_app(settings), "http://queue") as queue,
            running(registry_app(llm), "http://llm") as registry,
            httpx.AsyncClient(base_url=hub.url, headers=headers, timeout=10) as api,
        ):
            for client in (queue, registry):
                client.headers.update(headers)
            added = await registry.post(
                "/api/llm/endpoints",
                json={
                    "id": "local1",
                    "provider": "ollama",
                    "base_url": model.url,
                    "classes": ["local"],
                    "models": ["qwen3:8b"],
                },
            )
            assert added.status_code == 201, added.text
            checked = await registry.post("/api/llm/endpoints/local1/check")
            assert checked.json()["health"] == "healthy", checked.text
            await asyncio.to_thread(hub.start)
            yield Stack(hub, api, queue, model, str(origin))
    finally:
        hub.stop()
        if model.hold is not None:
            model.hold.set()  # no held call outlives the test
        await model.stop()


async def held(model: ScriptedModel, who: str, calls: int) -> None:
    """Wait until the upstream holds `calls` calls of `who` (planner or judge)."""

    async def reached() -> None:
        assert model.calls(who) == calls, model.chats

    await eventually(reached, timeout=30)


async def test_a_hub_killed_mid_planning_plans_again_and_completes(
    stack: Stack, worker: Callable[[], None]
) -> None:
    hold = stack.model.hold = asyncio.Event()
    worker()
    goal_id = await stack.submit()
    await held(stack.model, "plan", 1)
    stack.hub.kill()

    await stack.restart()
    await held(stack.model, "plan", 2)  # the goal is still planning; its new hub asks again
    assert (await stack.goal(goal_id))["state"] == "planning"
    assert await stack.tasks(goal_id) == []  # the dead hub made nothing
    hold.set()
    stack.model.hold = None

    goal = await stack.check_once_each(goal_id)
    assert stack.model.asked.count("plan") == 2  # the dead hub's answer was dropped
    assert [h["to_state"] for h in goal["history"]][:3] == ["submitted", "planning", "executing"]


async def submit_waits_on(engine: AsyncEngine) -> None:
    """The hub's INSERT of a goal's tasks into `hub.goal_tasks` waits on a lock."""
    async with engine.connect() as conn:
        waiting = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE 'INSERT INTO hub.goal_tasks%'"
                )
            )
        ).scalar_one()
    assert waiting == 1, waiting


async def test_a_hub_killed_between_submitting_tasks_and_recording_them_makes_none_twice(
    stack: Stack, engine: AsyncEngine, worker: Callable[[], None]
) -> None:
    async with engine.connect() as lock:
        # SHARE: the hub reads goal_tasks as usual, but its INSERT (and the task-event
        # follower's UPDATEs) wait for this transaction to end
        await lock.execute(text("LOCK TABLE hub.goal_tasks IN SHARE MODE"))
        goal_id = await stack.submit()

        async def first_submitted() -> None:  # its dependent comes once it is done
            titles = [t["description"].split("\n", 1)[0] for t in await stack.tasks(goal_id)]
            assert titles == TITLES[:1], titles
            await submit_waits_on(engine)

        await eventually(first_submitted, timeout=30)
        stack.hub.kill()
        await lock.rollback()  # the dead hub's transaction never commits

    worker()  # the tasks run while no hub is up: their events wait in the stream
    await stack.restart()
    goal = await stack.check_once_each(goal_id)
    assert [t["kind"] for t in goal["tasks"]] == ["plan", "plan", "follow_up"]


async def test_a_hub_killed_mid_verification_judges_again_and_completes(
    stack: Stack, worker: Callable[[], None]
) -> None:
    goal_id = await stack.submit()

    async def executing() -> None:
        goal = await stack.goal(goal_id)
        assert (goal["state"], goal["tasks_total"]) == ("executing", 2), goal

    await eventually(executing, timeout=30)
    hold = stack.model.hold = asyncio.Event()  # before any task can finish
    worker()
    await held(stack.model, "judge", 1)
    stack.hub.kill()

    await stack.restart()
    await held(stack.model, "judge", 2)  # still verifying: the new hub judges again
    assert (await stack.goal(goal_id))["verifications"] == []  # the dead hub's verdict is lost
    hold.set()
    stack.model.hold = None

    goal = await stack.check_once_each(goal_id)
    # judged twice for the first round (once by each hub), once for the follow-up's
    assert stack.model.asked.count("judge") == 3
    assert [h["to_state"] for h in goal["history"]] == [
        "submitted",
        "planning",
        "executing",
        "verifying",
        "executing",
        "verifying",
        "complete",
    ]
