"""The model-assisted review of the recent diff in an improving cycle, against the real services
(queue, scheduler, llm-registry and the hub, in this process) and a fake model behind the
gateway. No agent takes the cycle's scan (it is cancelled at the scan timeout): the review is
the hub's own part. The model gets the repo's recent patches, its `<review>` reply becomes
findings that go through the cycle's filters (one names a file the diff does not touch and is
dropped), the kept one is a goal, and the call is charged to the `improving` budget and
counted in the cycle's report. With that budget spent, the gateway refuses the review and the
report says so."""

import contextlib
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentcom_common.settings import CommonSettings
from agentcom_common.testing import eventually, running
from agentcom_hubfsm.app import create_app as hub_app
from agentcom_hubfsm.improving.review import MARK
from agentcom_hubfsm.settings import HubSettings
from agentcom_llm_registry.app import create_app as registry_app
from agentcom_llm_registry.settings import LlmSettings
from fake_llm import FakeLLM

Json = dict[str, Any]
NEVER = timedelta(hours=1)
FILES = {
    "pyproject.toml": '[project]\nname = "shop"\nversion = "0.1.0"\n',
    "src/shop/__init__.py": "",
    "src/shop/cart.py": 'def average(prices):\n    """Mean price."""\n'
    "    return sum(prices) / len(prices)\n",
}
REPLY = """<think>an empty cart divides by zero</think>
<review>
  <finding severity="high">
    <title>Fix the division by zero in average for an empty cart</title>
    <subject>shop.cart.average</subject>
    <files><file>src/shop/cart.py</file></files>
    <evidence><line>return sum(prices) / len(prices)</line></evidence>
  </finding>
  <finding severity="medium">
    <title>Add tests for the payment module</title>
    <subject>shop.pay</subject>
    <files><file>src/shop/pay.py</file></files>
  </finding>
</review>"""


@dataclass
class Reviewer(FakeLLM):
    """A fake model that answers review prompts with `REPLY`; anything else gets prose."""

    prompts: list[str] = field(default_factory=list[str])

    def answer(self, body: Json) -> tuple[str, Json | None]:
        messages: list[Json] = body["messages"]
        if MARK not in messages[0]["content"]:
            return "I would rather not plan this.", None
        self.prompts.append(messages[-1]["content"])
        return REPLY, None


@dataclass
class Stack:
    hub: httpx.AsyncClient
    registry: httpx.AsyncClient


Start = Callable[..., contextlib.AbstractAsyncContextManager[Stack]]


@pytest.fixture
async def model() -> AsyncGenerator[Reviewer]:
    fake = Reviewer("reviewer")
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def origin(tmp_path: Path, repos: Any) -> Path:
    made: Path = repos.origin(tmp_path, FILES)
    return made


@pytest.fixture
def stack(
    settings: CommonSettings,
    admin_token: str,
    tmp_path: Path,
    model: Reviewer,
    origin: Path,
    hub: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> Start:
    base = settings.model_dump()

    @contextlib.asynccontextmanager
    async def start(**llm_settings: Any) -> AsyncGenerator[Stack]:
        llm = LlmSettings.model_validate(
            base
            | {
                "llm_tiers": {"trivial": ["rev"], "standard": ["rev"], "complex": ["rev"]},
                "llm_health_interval": timedelta(milliseconds=100),
                "llm_ledger_dir": str(tmp_path / "ledger"),
                "llm_ledger_flush_interval": timedelta(milliseconds=50),
            }
            | llm_settings
        )
        hub_settings = HubSettings.model_validate(
            base
            | {
                "hub_data_dir": tmp_path / "hub",
                "hub_tick_interval": timedelta(milliseconds=50),
                "hub_leader_interval": timedelta(milliseconds=500),
                "hub_goal_sweep": timedelta(milliseconds=100),
                "hub_health_interval": NEVER,
                "hub_llm_backoff": NEVER,  # the goal waits to be planned, quietly
                "hub_improving_enabled": True,
                "hub_improving_repos": [str(origin)],
                "hub_improving_review": True,
                "hub_improving_scan_timeout": timedelta(seconds=2),  # no agent scans
                "hub_improving_interval": NEVER,  # one cycle
                "hub_contemplation_interval": NEVER,
            }
        )
        async with (
            running(registry_app(llm), "http://llm") as registry,
            running(hub_app(hub_settings), "http://hubfsm") as h,
        ):
            for client in (registry, h):
                client.headers["Authorization"] = f"Bearer {admin_token}"
            body = {"id": "rev", "provider": "ollama", "base_url": model.url, "classes": ["rev"]}
            added = await registry.post("/api/llm/endpoints", json=body)
            assert added.status_code == 201, added.text
            checked = await registry.post("/api/llm/endpoints/rev/check")
            assert checked.json()["health"] == "healthy", checked.text
            yield Stack(h, registry)

    return start


async def ended_cycle(s: Stack) -> Json:
    async def ended() -> Json:
        got = await s.hub.get("/api/hub/improving/cycles/1")
        assert got.status_code == 200, got.text
        report: Json = got.json()
        assert report["ended_at"] is not None, report
        return report

    return await eventually(ended, timeout=60)


async def improving_spent(s: Stack) -> Json:
    costs = (await s.registry.get("/api/llm/costs")).json()
    [budget] = [b for b in costs["budgets"] if b["scope"] == "hub:improving"]
    spent: Json = budget
    return spent


@pytest.mark.timeout(300)  # four services and a model in one process, on a busy machine
async def test_the_review_of_the_recent_diff_becomes_findings_charged_to_improving(
    stack: Start, model: Reviewer, origin: Path
) -> None:
    async with stack() as s:
        report = await ended_cycle(s)
        [prompt] = model.prompts
        assert "return sum(prices) / len(prices)" in prompt  # the patches of the last commits
        [review] = report["reviews"]
        assert (review["repo"], review["state"], review["findings"]) == (
            str(origin),
            "reviewed",
            1,
        ), report
        assert review["head"] in prompt
        assert review["note"] == "finding 2: names no file or one the diff does not touch"
        assert report["budget"] == {
            "schema_version": 1,
            "calls": 1,
            "tokens_in": 10,
            "tokens_out": 5,
            "cost_usd": 0.0,
        }, report
        assert [r["state"] for r in report["repos"]] == ["timed_out"]  # no agent scanned
        assert (report["found"], report["kept"], report["outcome"]) == (1, 1, "kept"), report

        # the finding went through the filters and became a self-improvement goal
        found = (await s.hub.get("/api/hub/findings")).json()["findings"]
        [finding] = found
        assert (finding["category"], finding["state"], finding["files"]) == (
            "review",
            "kept",
            ["src/shop/cart.py"],
        ), finding
        assert finding["title"] == "Fix the division by zero in average for an empty cart"
        assert finding["goal_id"] == report["goals"][0]
        goal = (await s.hub.get(f"/api/goals/{finding['goal_id']}")).json()
        assert (goal["source"], goal["link"]) == (
            "self_improvement",
            f"/api/hub/findings/{finding['id']}",
        )

        # the gateway charged the call to the improving budget
        async def charged() -> None:
            assert (await improving_spent(s))["tokens"] == 15

        await eventually(charged, timeout=30)


@pytest.mark.timeout(300)
async def test_a_spent_improving_budget_refuses_the_review(
    stack: Start, model: Reviewer, origin: Path
) -> None:
    async with stack(llm_hub_budgets={"improving": {"tokens": 10}}) as s:
        report = await ended_cycle(s)
        assert model.prompts == []  # the gateway refused it before the model was asked
        [review] = report["reviews"]
        assert (review["repo"], review["state"]) == (str(origin), "refused"), report
        assert review["note"].startswith("budget_exhausted"), review
        assert report["budget"]["calls"] == 0
        assert f"{origin}: review refused: budget_exhausted" in report["notes"][-1], report
        assert (report["found"], report["kept"], report["outcome"]) == (0, 0, "nothing")
        assert (await s.hub.get("/api/hub/findings")).json()["findings"] == []
