"""The hub's planner through the real llm-registry gateway over NATS, against fake models that
speak the Ollama and Anthropic protocols, on a real git repo: re-prompt, refusal, fallback, and
a gateway error that is not a plan error."""

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

import fake_ollama
from agentcom_common import clock, subjects
from agentcom_common.contracts.hub import HubState, HubStateChanged
from agentcom_common.errors import UnavailableError
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import eventually, running
from agentcom_hubfsm import clients
from agentcom_hubfsm.goals.planner import Planned, PlanRefused, plan_goal
from agentcom_hubfsm.goals.planprompt import GoalBrief
from agentcom_hubfsm.repocache import RepoCache
from agentcom_llm_registry.app import create_app as llm_app
from agentcom_llm_registry.settings import LlmSettings
from fake_llm import FakeLLM

Json = dict[str, Any]
FILES = {
    "README.md": "# Shop\nA tiny web shop.\n",
    "src/shop/app.py": "def main(): ...\n",
    "tests/test_app.py": "def test_main(): ...\n",
}


def task(title: str, **fields: Any) -> Json:
    return {
        "title": title,
        "description": f"{title}, end to end",
        "success_criteria": [f"{title} is done"],
        "verification": ["pytest -q"],
        "tier": "standard",
        "estimated_tokens": 20_000,
    } | fields


GOOD = {
    "summary": "route, then its test",
    "tasks": [
        task("Add /health", key="route", files=["src/shop/app.py"]),
        task("Test /health", depends_on=["route"], new_files=["tests/test_health.py"]),
    ],
}
# a file that is not in the repo, and a task waiting for one listed after it
BAD = {
    "tasks": [
        task("Add /health", files=["src/shop/ghost.py"], depends_on=[2]),
        task("Test /health", new_files=["tests/test_health.py"]),
    ]
}
BAD_ERRORS = [
    'task 1 ("Add /health") depends on task 2 ("Test /health"), which comes later: a task may '
    "depend only on tasks listed before it",
    'task 1 ("Add /health") changes src/shop/ghost.py, which is not in the repo; list it under '
    "new_files if the task creates it",
]


@dataclass
class ScriptedClaude(FakeLLM):
    """The registry's Anthropic-protocol fake, answering with scripted texts in turn."""

    script: list[str] = field(default_factory=list[str])

    def answer(self, body: Json) -> tuple[str, Json | None]:
        del body  # the script decides
        return self.script[len(self.chats) - 1], None


@pytest.fixture
def llm_settings(settings: CommonSettings, tmp_path: Path) -> LlmSettings:
    return LlmSettings.model_validate(
        settings.model_dump()
        | {
            "llm_health_interval": timedelta(milliseconds=100),
            "llm_ledger_flush_interval": timedelta(milliseconds=50),
            "llm_ledger_dir": str(tmp_path / "ledger"),
            "llm_request_timeout": timedelta(seconds=10),
        }
    )


@pytest.fixture
async def gateway(
    llm_settings: LlmSettings, admin_token: str, js: JetStreamContext
) -> AsyncIterator[httpx.AsyncClient]:
    """The llm-registry (its NATS chat endpoint and its admin API), told the hub is executing
    before it starts (it reads the newest hub state from the stream)."""
    event = HubStateChanged(state=HubState.EXECUTING, at=clock.now())
    await js.publish(subjects.HUB_STATE_CHANGED, event.model_dump_json().encode())
    async with running(llm_app(llm_settings), "http://llm") as api:
        api.headers["Authorization"] = f"Bearer {admin_token}"
        yield api


async def register(api: httpx.AsyncClient, endpoint_id: str, provider: str, url: str) -> None:
    classes = ["claude"] if provider == "anthropic" else ["local"]
    made = await api.post(
        "/api/llm/endpoints",
        json={"id": endpoint_id, "provider": provider, "base_url": url, "classes": classes}
        | ({"api_key": "sk-test"} if provider == "anthropic" else {}),
    )
    assert made.status_code == 201, made.text
    checked = await api.post(f"/api/llm/endpoints/{endpoint_id}/check")
    assert checked.json()["health"] == "healthy", checked.text


def goal(repo: Path, **extra: Any) -> GoalBrief:
    return GoalBrief(
        goal_id="goal-00000000000000f1",
        title="Add a health route",
        description="Operators probe the shop at /health.",
        success_criteria=("GET /health answers 200",),
        repo=str(repo),
        **extra,
    )


def user_texts(request: Json) -> list[str]:
    return [m["content"] for m in request["messages"] if m["role"] == "user"]


async def test_a_bad_plan_is_reprompted_with_its_errors_and_the_good_one_is_planned(
    gateway: httpx.AsyncClient, nc: Client, repos: Any, tmp_path: Path
) -> None:
    origin = repos.origin(tmp_path, FILES)
    async with fake_ollama.serve() as local:
        await register(gateway, "local", "ollama", local.url)
        local.play(
            fake_ollama.reply(f"Here you go:\n```json\n{json.dumps(BAD)}\n```", tokens=(900, 80)),
            fake_ollama.reply(json.dumps(GOOD), tokens=(1200, 90)),
        )
        chat = partial(clients.chat, nc, timeout=30)
        outcome = await plan_goal(chat, RepoCache(tmp_path / "cache"), goal(origin))

    assert isinstance(outcome, Planned), outcome
    assert outcome.attempts == 2
    assert [t.title for t in outcome.plan.tasks] == ["Add /health", "Test /health"]
    assert outcome.head == repos.git("rev-parse", "main", cwd=origin).strip()
    assert (outcome.usage.calls, outcome.usage.tokens_in, outcome.usage.tokens_out) == (
        2,
        2100,
        170,
    )
    first, second = local.requests
    # the plan is built from the goal's repo at HEAD, not from the hub's working dir
    prompt = user_texts(first)[0]
    assert "Files (3):\nREADME.md\nsrc/shop/app.py\ntests/test_app.py" in prompt
    assert "# Shop\nA tiny web shop." in prompt
    assert "pyproject.toml" not in prompt
    assert first["options"]["num_predict"] == 8192
    # the re-prompt: the refused answer, then its exact errors
    assert second["messages"][-2]["role"] == "assistant"
    assert second["messages"][-2]["content"].startswith("Here you go:")
    assert user_texts(second)[-1].startswith(
        "That plan was refused:\n" + "".join(f"- {e}\n" for e in BAD_ERRORS)
    )

    async def charged_to_executing() -> None:
        costs = (await gateway.get("/api/llm/costs", params={"group_by": "caller_class"})).json()
        assert {r["key"]: r["calls"] for r in costs["rows"]} == {"hub:executing": 2}

    await eventually(charged_to_executing)


async def test_two_bad_answers_refuse_the_plan_with_the_last_errors(
    gateway: httpx.AsyncClient, nc: Client, repos: Any, tmp_path: Path
) -> None:
    origin = repos.origin(tmp_path, FILES)
    forty = {"tasks": [task(f"Step {i}") for i in range(40)]}
    async with fake_ollama.serve() as local:
        await register(gateway, "local", "ollama", local.url)
        local.play(
            fake_ollama.reply("I would start with the route, then add tests."),
            fake_ollama.reply(json.dumps(forty)),
        )
        outcome = await plan_goal(
            partial(clients.chat, nc, timeout=30), RepoCache(tmp_path / "cache"), goal(origin)
        )
    assert isinstance(outcome, PlanRefused), outcome
    assert outcome.attempts == 2
    assert outcome.errors == (
        "the plan has 40 tasks: at most 8 are allowed; merge related work into fewer, larger tasks",
    )
    assert user_texts(local.requests[1])[-1].startswith(
        "That plan was refused:\n- no plan found: the reply holds no JSON object"
    )


async def test_with_the_local_model_down_the_plan_comes_from_the_claude_fallback(
    gateway: httpx.AsyncClient, nc: Client, js: JetStreamContext, repos: Any, tmp_path: Path
) -> None:
    origin = repos.origin(tmp_path, FILES)
    async with fake_ollama.serve() as local:
        await register(gateway, "local", "ollama", local.url)
    # the local endpoint is gone now (its server stopped); Claude is the next class
    claude = ScriptedClaude("claude", models=["claude-sonnet-4-5"], script=[json.dumps(GOOD)])
    await claude.start()
    try:
        await register(gateway, "claude", "anthropic", claude.url)
        routed = await js.subscribe(subjects.LLM_ROUTED)
        outcome = await plan_goal(
            partial(clients.chat, nc, timeout=30), RepoCache(tmp_path / "cache"), goal(origin)
        )
    finally:
        await claude.stop()
    assert isinstance(outcome, Planned), outcome
    assert outcome.attempts == 1
    [request] = claude.chats
    assert request["system"].startswith("You plan work for a fleet of coding agents.")
    event = json.loads((await routed.next_msg(timeout=5)).data)
    assert (event["caller_class"], event["goal_id"]) == ("hub:executing", "goal-00000000000000f1")
    assert event["routing"]["endpoint_id"] == "claude"
    local_step = next(c for c in event["routing"]["candidates"] if c["endpoint_id"] == "local")
    assert local_step["outcome"].startswith(("failed", "skipped")), local_step


async def test_a_gateway_without_endpoints_is_unavailable_not_a_bad_plan(
    gateway: httpx.AsyncClient, nc: Client, repos: Any, tmp_path: Path
) -> None:
    origin = repos.origin(tmp_path, FILES)
    with pytest.raises(UnavailableError) as caught:
        await plan_goal(
            partial(clients.chat, nc, timeout=30), RepoCache(tmp_path / "cache"), goal(origin)
        )
    assert caught.value.code == "no_endpoint_available"


async def test_no_gateway_at_all_is_unavailable(nc: Client, repos: Any, tmp_path: Path) -> None:
    origin = repos.origin(tmp_path, FILES)
    with pytest.raises(UnavailableError) as caught:
        await plan_goal(
            partial(clients.chat, nc, timeout=2), RepoCache(tmp_path / "cache"), goal(origin)
        )
    assert caught.value.code == "llm_unavailable"


async def test_every_endpoint_failing_is_unavailable_not_a_bad_plan(
    gateway: httpx.AsyncClient, nc: Client, repos: Any, tmp_path: Path
) -> None:
    origin = repos.origin(tmp_path, FILES)
    async with fake_ollama.serve() as local:
        await register(gateway, "local", "ollama", local.url)
        local.play(fake_ollama.refuse(500, "internal", "the model crashed"))
        with pytest.raises(UnavailableError) as caught:
            await plan_goal(
                partial(clients.chat, nc, timeout=30), RepoCache(tmp_path / "cache"), goal(origin)
            )
    assert caught.value.code == "upstream_failed"
    assert "local: failed: HTTP 500" in caught.value.detail
