"""A goal from intake to `complete` through the real services: the queue, the llm-registry's
gateway (over NATS, to a fake model upstream speaking the Ollama protocol) and the hub, all in
this process; a pull worker claims and reports the tasks over the queue's NATS RPC (the
documented path of a worker without a sidecar; `test_goals_sidecars` runs real sidecars).

The model is scripted by who asks: the planner's prompt gets a plan of two dependent tasks;
the judge's first answer finds a criterion unmet (a follow-up task is made and done), its
second passes the goal.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client

from agentcom_common.settings import CommonSettings
from agentcom_common.testing import eventually, running
from agentcom_hubfsm.app import create_app as hub_app
from agentcom_hubfsm.settings import HubSettings
from agentcom_llm_registry.app import create_app as registry_app
from agentcom_llm_registry.settings import LlmSettings
from agentcom_queue.app import create_app as queue_app
from fake_llm import FakeLLM
from goal_fakes import GREET_PLAN, pull_worker, verdict

Json = dict[str, Any]


@dataclass
class ScriptedModel(FakeLLM):
    """Answers the planner with `GREET_PLAN`, and the judge with `verdicts` in turn."""

    verdicts: list[str] = field(default_factory=list[str])
    asked: list[str] = field(default_factory=list[str])

    def answer(self, body: Json) -> tuple[str, Json | None]:
        system = str(body["messages"][0].get("content", ""))
        if "You plan work" in system:
            self.asked.append("plan")
            return json.dumps(GREET_PLAN), None
        self.asked.append("judge")
        return self.verdicts.pop(0), None


@dataclass
class Stack:
    hub: httpx.AsyncClient
    queue: httpx.AsyncClient
    registry: httpx.AsyncClient
    model: ScriptedModel


@pytest.fixture
async def stack(settings: CommonSettings, admin_token: str, tmp_path: Path) -> AsyncIterator[Stack]:
    base = settings.model_dump()
    llm = LlmSettings.model_validate(
        base
        | {
            "llm_health_interval": timedelta(milliseconds=200),
            "llm_ledger_flush_interval": timedelta(milliseconds=50),
            "llm_ledger_dir": str(tmp_path / "ledger"),
        }
    )
    hub = HubSettings.model_validate(
        base
        | {
            "hub_goal_sweep": timedelta(milliseconds=200),
            "hub_llm_backoff": timedelta(milliseconds=100),
            "hub_data_dir": tmp_path / "hub",
        }
    )
    model = ScriptedModel("ollama", models=["qwen3:8b"])
    await model.start()
    try:
        async with (
            running(queue_app(settings), "http://queue") as queue,
            running(registry_app(llm), "http://llm") as registry,
            running(hub_app(hub), "http://hubfsm") as hubfsm,
        ):
            for client in (queue, registry, hubfsm):
                client.headers["Authorization"] = f"Bearer {admin_token}"
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
            yield Stack(hubfsm, queue, registry, model)
    finally:
        await model.stop()


async def test_a_goal_is_planned_run_as_a_dag_checked_followed_up_and_completed(
    stack: Stack, nc: Client, repos: Any, tmp_path: Path
) -> None:
    origin = repos.origin(tmp_path, {"hello.py": "", "README.md": "# hello\n"})
    stack.model.verdicts = [verdict(True, False), verdict(True, True)]
    submitted = await stack.hub.post(
        "/api/goals",
        json={
            "title": "Greeting",
            "description": "hello.py greets people",
            "success_criteria": ["greet works", "it is tested"],
            "repo": str(origin),
        },
    )
    assert submitted.status_code == 201, submitted.text
    goal_id = submitted.json()["id"]

    done: list[str] = []
    stop = asyncio.Event()
    worker = asyncio.create_task(pull_worker(nc, stop, done))
    try:

        async def complete() -> Json:
            goal = (await stack.hub.get(f"/api/goals/{goal_id}")).json()
            assert goal["state"] == "complete", goal
            return goal

        goal = await eventually(complete, timeout=60)
    finally:
        stop.set()
        await worker

    assert [h["to_state"] for h in goal["history"]] == [
        "submitted",
        "planning",
        "executing",
        "verifying",
        "executing",
        "verifying",
        "complete",
    ]
    assert stack.model.asked == ["plan", "judge", "judge"]
    # the DAG: the test task was claimable only once the code task completed
    assert done[:2] == ["Add greet()", "Test greet()"]
    assert [t["kind"] for t in goal["tasks"]] == ["plan", "plan", "follow_up"]
    assert {t["state"] for t in goal["tasks"]} == {"completed"}
    assert (goal["tasks_done"], goal["tasks_total"]) == (3, 3)
    assert [v["passed"] for v in goal["verifications"]] == [False, True]
    assert goal["verifications"][0]["report"]["gaps"][0]["criterion"] == 2
    assert goal["plan"]["tasks"][1]["depends_on"] == ["code"]
    tasks = (await stack.queue.get("/api/tasks", params={"goal_id": goal_id})).json()["tasks"]
    assert len(tasks) == 3
    follow_up = next(t for t in tasks if t["description"].startswith("make criterion 2"))
    assert follow_up["success_criteria"] == ["it is tested"]
    second = next(t for t in tasks if t["description"].startswith("Test greet()"))
    first = next(t for t in tasks if t["description"].startswith("Add greet()"))
    assert second["depends_on"] == [first["id"]]


async def test_a_goal_submitted_to_a_resting_hub_is_planned_on_the_executing_budget(
    stack: Stack, nc: Client, repos: Any, tmp_path: Path
) -> None:
    origin = repos.origin(tmp_path, {"hello.py": "", "README.md": "# hello\n"})
    stack.model.verdicts = [verdict(True)]

    async def resting() -> None:
        hub = (await stack.hub.get("/api/hub/state")).json()
        assert hub["state"] == "resting", hub

    await eventually(resting)
    submitted = await stack.hub.post(
        "/api/goals",
        json={
            "title": "Greeting",
            "description": "hello.py greets people",
            "success_criteria": ["greet works"],
            "repo": str(origin),
        },
    )
    assert submitted.status_code == 201, submitted.text
    goal_id = submitted.json()["id"]
    stop = asyncio.Event()
    worker = asyncio.create_task(pull_worker(nc, stop, []))
    try:

        async def complete() -> None:
            goal = (await stack.hub.get(f"/api/goals/{goal_id}")).json()
            assert goal["state"] == "complete", goal

        await eventually(complete, timeout=60)
    finally:
        stop.set()
        await worker

    # the plan is made once the hub is executing, and so is charged there, not to resting
    async def charged_to_executing() -> None:
        costs = await stack.registry.get("/api/llm/costs", params={"group_by": "caller_class"})
        assert {r["key"]: r["calls"] for r in costs.json()["rows"]} == {"hub:executing": 2}

    await eventually(charged_to_executing)
