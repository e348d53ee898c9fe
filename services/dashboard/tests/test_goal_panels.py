"""The goal and hub panels in headless Chromium, driven by a real hubfsm.

The hub runs on its own socket beside the queue and the scheduler, with a real llm-registry
whose one endpoint is a fake Ollama upstream answering the planner with a two-task plan. An
admin follows a goal that waits for plan approval, rejects the plan (the hub plans again),
approves it, then cancels the goal, every step confirmed in the browser; the hub panel shows
the hub's own state, leader and moves, and pauses and resumes it.
"""

import json
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from dashboard_stack import Stack, claim, report, serve
from nats.aio.client import Client
from playwright.async_api import Browser, Dialog, Page, expect
from test_browser import browser, open_page

from agentcom_common.contracts.delivery import DeliveryReport, RiskAssessment
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import eventually
from agentcom_hubfsm.app import create_app as hub_app
from agentcom_hubfsm.settings import HubSettings
from agentcom_llm_registry.settings import LlmSettings
from fake_llm import FakeLLM, serve as serve_registry

__all__ = ["browser"]  # the fixture, shared with the other browser tests

Json = dict[str, Any]
PLAN = {
    "summary": "a greeting, then its documentation",
    "tasks": [
        {
            "key": "code",
            "title": "Write the greeting",
            "description": "Create greeting.txt holding hello",
            "success_criteria": ["greeting.txt says hello"],
            "verification": ["grep -q hello greeting.txt"],
            "new_files": ["greeting.txt"],
            "tier": "standard",
            "estimated_tokens": 1000,
        },
        {
            "key": "docs",
            "title": "Document the greeting",
            "description": "Create GREETING.md",
            "success_criteria": ["GREETING.md explains it"],
            "verification": ["test -f GREETING.md"],
            "depends_on": ["code"],
            "new_files": ["GREETING.md"],
            "tier": "standard",
            "estimated_tokens": 500,
        },
    ],
}


@dataclass
class Planner(FakeLLM):
    def answer(self, body: Json) -> tuple[str, Json | None]:
        del body  # every call here is the planner's
        return json.dumps(PLAN), None


def make_origin(tmp: Path) -> Path:
    bare, seed = tmp / "origin.git", tmp / "seed"
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t"}
    env |= {"GIT_COMMITTER_EMAIL": "t@x", "PATH": "/usr/bin:/bin"}
    for argv, cwd in (
        (["init", "-q", "--bare", "--initial-branch=main", str(bare)], tmp),
        (["init", "-q", "--initial-branch=main", str(seed)], tmp),
    ):
        subprocess.run(["git", *argv], cwd=cwd, env=env, check=True)
    (seed / "README.md").write_text("# greetings\n")
    for argv in (["add", "-A"], ["commit", "-qm", "first"], ["push", "-q", str(bare), "main"]):
        subprocess.run(["git", *argv], cwd=seed, env=env, check=True)
    return bare


@dataclass
class Hub:
    url: str
    model: Planner


@pytest.fixture
async def hub(settings: CommonSettings, admin_token: str, tmp_path: Path) -> AsyncIterator[Hub]:
    base = settings.model_dump()
    llm = LlmSettings.model_validate(
        base
        | {
            "llm_health_interval": timedelta(milliseconds=200),
            "llm_ledger_dir": str(tmp_path / "ledger"),
        }
    )
    hub_settings = HubSettings.model_validate(
        base
        | {
            "hub_goal_sweep": timedelta(milliseconds=200),
            "hub_llm_backoff": timedelta(milliseconds=100),
            "hub_data_dir": tmp_path / "hub",
        }
    )
    model = Planner("ollama", models=["qwen3:8b"])
    await model.start()
    try:
        async with serve_registry(llm) as registry, serve(hub_app(hub_settings)) as url:
            headers = {"Authorization": f"Bearer {admin_token}"}
            async with httpx.AsyncClient(base_url=registry, headers=headers) as http:
                endpoint = {"id": "local1", "provider": "ollama", "base_url": model.url}
                endpoint |= {"classes": ["local"], "models": ["qwen3:8b"]}
                assert (await http.post("/api/llm/endpoints", json=endpoint)).status_code == 201
                await http.post("/api/llm/endpoints/local1/check")
            yield Hub(url, model)
    finally:
        await model.stop()


@pytest.fixture
def dashboard_extra(hub: Hub) -> dict[str, Any]:
    return {"dashboard_hub_url": hub.url}


async def hub_get(stack: Stack, hub: Hub, path: str) -> Json:
    async with stack.client() as http:
        reply = await http.get(hub.url + path)
    assert reply.status_code == 200, reply.text
    return reply.json()


def answer_dialogs(page: Page, prompts: list[str]) -> list[str]:
    """Accept every confirm; answer each prompt with the next of `prompts`. Returns what was
    asked, in order."""
    asked: list[str] = []

    async def on_dialog(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await dialog.accept(prompts.pop(0) if dialog.type == "prompt" else None)

    page.on("dialog", on_dialog)
    return asked


async def test_an_admin_rejects_approves_and_cancels_a_goal_from_its_page(
    browser: Browser, stack: Stack, hub: Hub, tmp_path: Path
) -> None:
    page, console = await open_page(browser, stack, stack.admin_token)
    asked = answer_dialogs(page, ["do the docs first"])
    async with stack.client() as http:
        made = await http.post(
            f"{hub.url}/api/goals",
            json={
                "title": "Greeting",
                "description": "The repo has a greeting",
                "success_criteria": ["there is a greeting", "it is documented"],
                "repo": str(make_origin(tmp_path)),
                "autonomy": "review_plan",
            },
        )
    assert made.status_code == 201, made.text
    goal_id = made.json()["id"]

    row = page.locator(f'tr[data-goal="{goal_id}"]')
    await expect(row.locator("[data-goal-state]")).to_have_text("awaiting_approval", timeout=20_000)
    await expect(row.locator("[data-goal-progress]")).to_have_text("0/2")
    await row.click()
    detail = page.locator("#goal-detail")
    await expect(detail.locator("[data-plan-task]")).to_have_count(2)
    await expect(detail.locator('[data-plan-task="2"]')).to_contain_text("after code")
    await expect(detail.locator("#goal-history li")).to_have_count(3)  # ∅→submitted→planning→…

    await detail.locator('[data-goal-action="reject"]').click()

    async def planned_again() -> None:
        goal = await hub_get(stack, hub, f"/api/goals/{goal_id}")
        assert (goal["state"], goal["attempt"]) == ("awaiting_approval", 2), goal

    await eventually(planned_again, timeout=20)
    goal = await hub_get(stack, hub, f"/api/goals/{goal_id}")
    moves = [h["to_state"] for h in goal["history"]]
    assert moves[-3:] == ["awaiting_approval", "planning", "awaiting_approval"], moves
    assert "do the docs first" in goal["history"][-2]["reason"], goal["history"]

    await expect(detail.locator("#goal-state")).to_have_text("awaiting_approval", timeout=5000)
    await detail.locator('[data-goal-action="approve"]').click()
    await expect(detail.locator("#goal-state")).to_have_text("executing", timeout=5000)
    await expect(detail.locator("#goal-tasks li")).to_have_count(1, timeout=5000)  # the first
    await expect(detail.locator('[data-plan-task="1"]')).to_have_attribute("data-state", "queued")

    await detail.locator('[data-goal-action="cancel"]').click()
    await expect(detail.locator("#goal-state")).to_have_text("cancelled", timeout=5000)
    assert (await hub_get(stack, hub, f"/api/goals/{goal_id}"))["state"] == "cancelled"
    await expect(row.locator("[data-goal-state]")).to_have_text("cancelled", timeout=5000)
    assert asked == [
        "Why is the plan rejected? (the hub plans again with it)",
        'Reject the plan of "Greeting"?',
        'Approve the plan of "Greeting"?',
        'Cancel "Greeting" and its unfinished tasks?',
    ]
    assert console.errors == []


async def test_the_hub_panel_shows_the_real_hub_and_an_admin_pauses_and_resumes_it(
    browser: Browser, stack: Stack, hub: Hub
) -> None:
    async def led() -> dict[str, Any]:
        # a fresh hub has no leader for its first lease: wait until one leads, then compare
        shown = await hub_get(stack, hub, "/api/hub/state")
        assert shown["leader"] is not None, shown
        return shown

    state = await eventually(led, timeout=30)
    page, console = await open_page(browser, stack, stack.admin_token)
    asked = answer_dialogs(page, [])
    panel = page.locator("#panel-hub")
    await expect(panel.locator("[data-hub-state]")).to_have_text(state["state"], timeout=5000)
    await expect(panel.locator("[data-hub-leader]")).to_have_text(f"leader: {state['leader']}")
    await expect(panel.locator("#hub-history li").first).to_contain_text("→ resting")

    await panel.locator('[data-hub-action="pause"]').click()
    await expect(panel.locator("[data-hub-paused]")).to_be_visible(timeout=5000)
    assert (await hub_get(stack, hub, "/api/hub/state"))["paused"] is True
    await panel.locator('[data-hub-action="resume"]').click()
    await expect(panel.locator("[data-hub-paused]")).to_have_count(0, timeout=5000)
    assert (await hub_get(stack, hub, "/api/hub/state"))["paused"] is False
    assert asked == ["pause the hub?", "resume the hub?"]
    assert console.errors == []


async def test_the_goal_page_shows_the_risk_tier_of_a_delivered_task(
    browser: Browser, stack: Stack, hub: Hub, tmp_path: Path, nc: Client
) -> None:
    async with stack.client() as http:
        made = await http.post(
            f"{hub.url}/api/goals",
            json={
                "title": "Greeting",
                "description": "The repo has a greeting",
                "success_criteria": ["there is a greeting"],
                "repo": str(make_origin(tmp_path)),
                "autonomy": "review_plan",
            },
        )
        assert made.status_code == 201, made.text
        goal_id = made.json()["id"]

        async def awaiting() -> None:
            goal = await hub_get(stack, hub, f"/api/goals/{goal_id}")
            assert goal["state"] == "awaiting_approval", goal

        await eventually(awaiting, timeout=20)
        approved = await http.post(f"{hub.url}/api/goals/{goal_id}/plan/approve", json={})
        assert approved.status_code == 200, approved.text

    task = await eventually(lambda: claim(nc), timeout=20)  # the plan's first task
    await report(nc, task, "accepted")
    delivery = DeliveryReport(
        risk=RiskAssessment(tier=2, reasons=["a new file outside the tests: greeting.txt"]),
        action="review",
    ).model_dump(mode="json")
    await report(nc, task, "completed", result={"summary": "wrote it", "delivery": delivery})

    page, console = await open_page(browser, stack, stack.admin_token)
    await page.locator(f'tr[data-goal="{goal_id}"]').click()
    shown = page.locator(f'#goal-tasks [data-goal-task="{task.id}"]')
    await expect(shown.locator("[data-tier]")).to_have_text("tier 2", timeout=10_000)
    assert console.errors == []
