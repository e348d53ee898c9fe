"""Risk tiers at delivery, through the real queue, scheduler and sidecar, the real llm-registry
gateway (on a real port, a fake Ollama upstream behind it playing the reviewing model) and a
fake GitHub API: in a repo with CI that allows it, a tier-1 change the second model approved is
merged at its own head once its checks are green; a tier-3 change is a draft, not merged; red
CI, a reviewer asking for changes and a goal's autonomy level each keep a change from merging."""

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

import fake_llm
from agentcom_common.contracts.delivery import DeliveryReport
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import eventually
from agentcom_llm_registry.settings import LlmSettings
from agentcom_sidecar.config import SidecarConfig
from agentcom_sidecar.runner import Sidecar

RunSidecar = Callable[[SidecarConfig], AbstractAsyncContextManager[Sidecar]]
Json = dict[str, Any]
GREEN = [{"name": "tests", "status": "completed", "conclusion": "success"}]
RED = [{"name": "tests", "status": "completed", "conclusion": "failure"}]


@dataclass
class Reviewer(fake_llm.FakeLLM):
    """The reviewing model: approves, unless the request names a task listed in `verdicts`."""

    verdicts: dict[str, Json] = field(default_factory=dict[str, Json])

    def answer(self, body: Json) -> tuple[str, Json | None]:
        asked = body["messages"][-1]["content"]
        said = next((v for k, v in self.verdicts.items() if k in asked), None)
        return json.dumps(said or {"verdict": "approve", "comments": ["small and tested"]}), None


@dataclass
class Gateway:
    url: str
    reviewer: Reviewer


@pytest.fixture
async def gateway(
    settings: CommonSettings, admin_token: str, tmp_path: Path
) -> AsyncIterator[Gateway]:
    reviewer = Reviewer("reviewer", models=["reviewer:7b"])
    await reviewer.start()
    llm = LlmSettings.model_validate(
        settings.model_dump()
        | {
            "llm_health_interval": timedelta(milliseconds=200),
            "llm_ledger_flush_interval": timedelta(milliseconds=50),
            "llm_ledger_dir": str(tmp_path / "ledger"),
        }
    )
    try:
        async with (
            fake_llm.serve(llm) as url,
            httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {admin_token}"}
            ) as registry,
        ):
            added = await registry.post(
                "/api/llm/endpoints",
                json={
                    "id": "rev",
                    "provider": "ollama",
                    "base_url": reviewer.url,
                    "classes": ["local"],
                    "models": ["reviewer:7b"],
                },
            )
            assert added.status_code == 201, added.text
            checked = await registry.post("/api/llm/endpoints/rev/check")
            assert checked.json()["health"] == "healthy", checked.text
            yield Gateway(url, reviewer)
    finally:
        await reviewer.stop()


def writes(*paths: str) -> list[str]:
    """A shell task writing one small line into each of `paths`."""
    script = 'for p in "$@"; do mkdir -p "$(dirname "$p")"; echo "x = 1" > "$p"; done'
    return ["sh", "-c", script, "sh", *paths]


async def delivered(
    hub: Any, description: str, *paths: str, **metadata: Any
) -> tuple[dict[str, Any], DeliveryReport]:
    made = await hub.submit(
        description=description,
        repo=hub.repo,
        metadata={"command": writes(*paths)} | metadata,
        verification_steps=[{"type": "file_exists", "path": paths[0]}],
    )

    async def check() -> dict[str, Any]:
        task = await hub.task(made["id"])
        assert task["state"] == "completed", task
        return task

    task = await eventually(check, timeout=90)  # a whole run with its checks; 2 busy cores
    return task, DeliveryReport.model_validate(task["result"]["delivery"])


async def agent(hub: Any, origin: Path, github: Any, gateway: Gateway, name: str) -> SidecarConfig:
    hub.repo = str(origin)
    repo = {"url": str(origin), "github": "acme/widgets", "auto_merge": True, "ci": True}
    return await hub.agent(
        name,
        allow_hub_commands=True,
        repos=[repo],
        github_api_url=github.url,
        gateway_url=gateway.url,
        review={"enabled": True},
        ci_wait=20.0,
        ci_poll_interval=0.05,
    )


async def test_a_tier_1_change_merges_on_green_ci_and_a_tier_3_change_is_a_draft(
    hub: Any, run_sidecar: RunSidecar, origin: Path, github: Any, gateway: Gateway
) -> None:
    github.check_runs = GREEN
    async with run_sidecar(await agent(hub, origin, github, gateway, "tiers")):
        small, small_report = await delivered(hub, "Small fix", "src/app.py", "tests/test_app.py")
        ci, ci_report = await delivered(
            hub, "Touch CI", ".github/workflows/ci.yml", "tests/test_ci.py"
        )

    assert small_report.risk is not None
    assert small_report.risk.tier == 1, small_report
    assert small_report.review is not None
    assert (small_report.review.verdict, small_report.review.model) == ("approve", "reviewer:7b")
    assert "approved by the second model reviewer:7b" in small_report.risk.reasons[0]
    asked = gateway.reviewer.chats[0]["messages"][-1]["content"]
    assert "+++ b/src/app.py" in asked  # the reviewer saw the diff
    assert "+x = 1" in asked
    assert (small_report.action, small_report.ci, small_report.merged) == ("merge", "green", True)
    assert github.merges == [
        {"number": 1, "merge_method": "squash", "sha": small["result"]["commit"]}
    ]
    checked = [p for m, p, _ in github.requests if m == "GET" and "/commits/" in p]
    assert f"/repos/acme/widgets/commits/{small['result']['commit']}/check-runs" in checked
    assert "review by `reviewer:7b`: **approve**" in github.pulls[0]["body"]
    assert "- small and tested" in github.pulls[0]["body"]

    assert ci_report.risk is not None
    assert ci_report.risk.tier == 3, ci_report
    assert any("CI config changed" in why for why in ci_report.risk.reasons)
    assert (ci_report.action, ci_report.merged) == ("draft", False)
    assert github.pulls[1]["draft"] is True
    assert github.pulls[1]["merged"] is False
    assert "Tier: **3**" in github.pulls[1]["body"]
    assert ci["result"]["pr_url"] == github.pulls[1]["html_url"]


async def test_red_ci_a_reviewer_asking_for_changes_or_the_goals_autonomy_keep_a_merge_back(
    hub: Any, run_sidecar: RunSidecar, origin: Path, github: Any, gateway: Gateway
) -> None:
    gateway.reviewer.verdicts["Sloppy"] = {
        "verdict": "request_changes",
        "comments": ["name the constant"],
    }
    async with run_sidecar(await agent(hub, origin, github, gateway, "careful")):
        github.check_runs = RED
        _, red = await delivered(hub, "Red fix", "src/red.py", "tests/test_red.py")
        github.check_runs = GREEN
        _, sloppy = await delivered(hub, "Sloppy fix", "src/sloppy.py", "tests/test_sloppy.py")
        _, capped = await delivered(
            hub, "Goal fix", "src/goal.py", "tests/test_goal.py", autonomy="review_plan"
        )

    assert red.risk is not None
    assert red.risk.tier == 1, red
    assert (red.action, red.ci, red.merged) == ("merge", "red", False)
    assert red.merge_note == "CI failed: tests"
    assert sloppy.risk is not None
    assert sloppy.risk.tier == 2, sloppy
    assert any("asked for changes: name the constant" in r for r in sloppy.risk.reasons)
    assert (sloppy.action, sloppy.merged) == ("review", False)
    assert capped.risk is not None
    assert capped.risk.tier == 1, capped
    assert (capped.cap, capped.action, capped.merged) == ("review", "review", False)
    assert "autonomy level allows at most: review" in github.pulls[2]["body"]
    assert github.merges == []
