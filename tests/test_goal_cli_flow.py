"""`agentcom goal …` where a model plans: a real hub process, the queue and the llm-registry's
gateway in this process (the hub reaches both over NATS), a fake model upstream speaking the
Ollama protocol, a real git repo. The CLI runs as users run it.

The model is scripted by the goal it is shown: a goal titled "Unplannable" gets an answer that
is no plan (twice: the goal fails), any other goal a good plan of two dependent tasks.
"""

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from agentcom_cli.main import app as cli
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import ServiceProcess, eventually, running
from agentcom_llm_registry.app import create_app as registry_app
from agentcom_llm_registry.settings import LlmSettings
from agentcom_queue.app import create_app as queue_app
from fake_llm import FakeLLM
from goal_fakes import GREET_PLAN

Json = dict[str, Any]
Env = dict[str, str]


@dataclass
class Planner(FakeLLM):
    prompts: list[str] = field(default_factory=list[str])

    def answer(self, body: Json) -> tuple[str, Json | None]:
        prompt = "\n".join(str(m.get("content", "")) for m in body["messages"])
        self.prompts.append(prompt)
        return ("no plan today" if "Unplannable" in prompt else json.dumps(GREET_PLAN)), None


@dataclass
class Hub:
    env: Env
    model: Planner
    origin: Path


@pytest.fixture
async def hub(
    settings: CommonSettings, admin_token: str, tmp_path: Path, repos: Any
) -> AsyncIterator[Hub]:
    llm = LlmSettings.model_validate(
        settings.model_dump()
        | {
            "llm_health_interval": timedelta(milliseconds=200),
            "llm_ledger_flush_interval": timedelta(milliseconds=50),
            "llm_ledger_dir": str(tmp_path / "ledger"),
        }
    )
    assert settings.database_url is not None
    process = ServiceProcess(
        "hubfsm",
        str(settings.nats_url),
        settings.database_url.get_secret_value(),
        tmp_path / "hubfsm.log",
        env={
            "AGENTCOM_HUB_DATA_DIR": str(tmp_path / "hub"),
            "AGENTCOM_HUB_GOAL_SWEEP": "200ms",
            "AGENTCOM_HUB_LLM_BACKOFF": "100ms",
        },
    )
    model = Planner("ollama", models=["qwen3:8b"])
    await model.start()
    try:
        async with (
            running(queue_app(settings), "http://queue"),
            running(registry_app(llm), "http://llm") as registry,
        ):
            registry.headers["Authorization"] = f"Bearer {admin_token}"
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
            await asyncio.to_thread(process.start)
            env = {
                "AGENTCOM_TOKEN": admin_token,
                "AGENTCOM_PORT_OFFSET": process.env["AGENTCOM_PORT_OFFSET"],
                "AGENTCOM_HOME": str(tmp_path / "home"),
            }
            origin = repos.origin(tmp_path, {"hello.py": "", "README.md": "# hello\n"})
            yield Hub(env, model, origin)
    finally:
        await asyncio.to_thread(process.stop)
        await model.stop()


async def agentcom(env: Env, *args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=env)


async def add(hub: Hub, title: str, *extra: str) -> str:
    made = await agentcom(
        hub.env,
        "goal",
        "add",
        title,
        "--criterion",
        "greet works",
        "--repo",
        str(hub.origin),
        *extra,
    )
    assert made.exit_code == 0, made.output
    return made.output.split()[0]


async def in_state(env: Env, goal_id: str, state: str, attempt: int = 1) -> Json:
    shown = await agentcom(env, "goal", "show", goal_id, "--json")
    assert shown.exit_code == 0, shown.output
    goal: Json = json.loads(shown.output)
    assert (goal["state"], goal["attempt"]) == (state, attempt)
    return goal


async def test_a_failed_goal_is_watched_to_its_end_shown_with_its_errors_and_retried(
    hub: Hub,
) -> None:
    goal_id = await add(hub, "Unplannable")
    watched = await agentcom(hub.env, "goal", "watch", goal_id, "--interval", "0.1", "--json")
    assert watched.exit_code == 1, watched.output
    changes = [json.loads(text) for text in watched.output.splitlines()]
    moves = [c["to_state"] for c in changes if c["kind"] == "goal"]
    assert moves == ["submitted", "planning", "failed"]

    shown = await agentcom(hub.env, "goal", "show", goal_id)
    assert shown.exit_code == 0, shown.output
    assert "plan: none yet" in shown.output
    assert "plan error: " in shown.output  # the model's answer was not a plan, and it says why

    retried = await agentcom(hub.env, "goal", "retry", goal_id, "--reason", "try again")
    assert retried.exit_code == 0, retried.output
    assert retried.output.split()[:2] == [goal_id, "submitted"]
    again = await agentcom(hub.env, "goal", "watch", goal_id, "--interval", "0.1")
    assert again.exit_code == 1, again.output
    assert "failed -> submitted  (test admin)  try again" in again.output
    detail = json.loads((await agentcom(hub.env, "goal", "show", goal_id, "--json")).output)
    assert (detail["state"], detail["attempt"]) == ("failed", 2)


async def test_a_plan_is_shown_rejected_approved_and_its_tasks_watched_until_cancelled(
    hub: Hub, tmp_path: Path
) -> None:
    goal_id = await add(hub, "Greeting", "--review-plan")
    await eventually(partial(in_state, hub.env, goal_id, "awaiting_approval"), timeout=30)

    shown = (await agentcom(hub.env, "goal", "show", goal_id)).output
    assert "plan: a module, then its test" in shown
    assert "1. Add greet()  [standard, ~1000 tokens]" in shown
    assert "2. Test greet()  [trivial, ~500 tokens]  after 1" in shown
    assert "files: test_hello.py (new)" in shown
    assert "check: python -m unittest -q test_hello" in shown

    rejected = await agentcom(hub.env, "goal", "reject", goal_id, "--reason", "smaller steps")
    assert rejected.exit_code == 0, rejected.output
    assert rejected.output.split()[:2] == [goal_id, "planning"]
    shown_json = await eventually(
        partial(in_state, hub.env, goal_id, "awaiting_approval", attempt=2), timeout=30
    )
    moves = [h["to_state"] for h in shown_json["history"]]
    assert moves[-3:] == ["awaiting_approval", "planning", "awaiting_approval"]
    assert "smaller steps" in hub.model.prompts[-1]  # the next plan was made knowing why

    edited = tmp_path / "plan.yaml"
    edited.write_text(
        "tasks:\n- title: Touch a ghost\n  description: edit it\n  success_criteria: [done]\n"
        "  verification: ['true']\n  files: [ghost.py]\n  estimated_tokens: 10\n"
    )
    refused = await agentcom(hub.env, "goal", "approve", goal_id, "--plan", str(edited))
    assert refused.exit_code == 1
    assert refused.output.startswith("error: invalid_plan: ")
    assert "ghost.py" in refused.output

    approved = await agentcom(hub.env, "goal", "approve", goal_id)
    assert approved.exit_code == 0, approved.output
    assert approved.output.split()[:2] == [goal_id, "executing"]
    printed, code = await watch_until_cancelled(hub.env, goal_id, "task ")
    assert code == 1, printed
    assert "- -> queued  Add greet()" in printed  # no worker runs: its tasks wait
    assert "executing -> cancelled  (test admin)" in printed


async def watch_until_cancelled(env: Env, goal_id: str, live: str) -> tuple[str, int]:
    """Run `agentcom goal watch` as a process; once it has printed `live`, cancel the goal
    from another client; what it printed and its exit code."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCOM_")}
    watcher = await asyncio.create_subprocess_exec(
        Path(sys.executable).with_name("agentcom"),
        *("goal", "watch", goal_id, "--interval", "0.2"),
        env=base | env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert watcher.stdout is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(30):
            while not any(live in s for s in seen):
                seen.append((await watcher.stdout.readline()).decode())
                assert seen[-1], "".join(seen)  # EOF: the watcher ended early
        cancelled = await agentcom(env, "goal", "cancel", goal_id, "--yes")
        assert cancelled.exit_code == 0, cancelled.output
        async with asyncio.timeout(30):
            rest, _ = await watcher.communicate()
    finally:
        if watcher.returncode is None:
            watcher.kill()
            await watcher.wait()
    assert watcher.returncode is not None
    return "".join(seen) + rest.decode(), watcher.returncode
