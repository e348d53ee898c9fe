"""The screenshots in README.md and docs/dashboard.md, from a real run: the queue, scheduler and
dashboard of the stack, a real llm-registry whose gateway fronts the fake Ollama of the tests
(`tests/servers/fake_llm.py`), and two real sidecar processes. `builder` does shell tasks with
verification in a local repo (three pass; one fails and is dead-lettered; one is still writing
output when the picture is taken); `coder` runs the agent loop through the gateway, the model's
turns being tool calls that fix a bug. Nothing is published by the test itself.

The pictures go to the test's tmp dir, or to docs/img/ with AGENTCOM_UPDATE_SCREENSHOTS=1.
"""

import os
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from dashboard_stack import Stack
from playwright.async_api import Browser, expect
from real_sidecar import (
    BUGGY,
    FIXED,
    RUN_TESTS,
    TEST,
    origin,
    register,
    scheduler_settings,
    sidecar,
)
from test_browser import IMAGES, browser, open_page, screenshot_dir

from agentcom_common.settings import CommonSettings
from agentcom_common.testing import NatsServer, eventually
from agentcom_llm_registry.settings import LlmSettings
from fake_llm import ScriptedLLM, serve as serve_registry

__all__ = ["browser"]  # the fixture, shared with test_browser

SHOTS = ("dashboard.png", "dashboard-phone.png", "dashboard-login.png")
Json = dict[str, Any]


@pytest.fixture
def scheduler_extra(nats_server: NatsServer) -> dict[str, Any]:
    return scheduler_settings(nats_server)


@pytest.fixture
async def model() -> AsyncIterator[ScriptedLLM]:
    """The coder's model: run the tests, read calc.py, write the fix, run the tests again."""
    fake = ScriptedLLM(
        "ollama",
        models=["qwen3:8b"],
        final="Fixed add() in calc.py: it subtracted; test_calc passes now.",
    )
    fake.script = [
        {"name": "run_command", "arguments": {"command": RUN_TESTS}},
        {"name": "read_file", "arguments": {"path": "calc.py"}},
        {"name": "write_file", "arguments": {"path": "calc.py", "content": FIXED}},
        {"name": "run_command", "arguments": {"command": RUN_TESTS}},
    ]
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def registry(
    settings: CommonSettings, admin_token: str, model: ScriptedLLM, tmp_path: Path
) -> AsyncIterator[str]:
    """A real llm-registry with the fake Ollama as its one endpoint; yields its URL."""
    llm = LlmSettings.model_validate(
        settings.model_dump()
        | {
            "llm_health_interval": timedelta(milliseconds=200),
            "llm_ledger_flush_interval": timedelta(milliseconds=50),
            "llm_ledger_dir": str(tmp_path / "ledger"),
            "llm_request_timeout": timedelta(seconds=20),
        }
    )
    async with serve_registry(llm) as url:
        admin = {"Authorization": f"Bearer {admin_token}"}
        async with httpx.AsyncClient(base_url=url, headers=admin, timeout=30) as http:
            endpoint = {"id": "gpu1", "provider": "ollama", "base_url": model.url}
            endpoint |= {"classes": ["local"], "models": ["qwen3:8b"]}
            added = await http.post("/api/llm/endpoints", json=endpoint)
            assert added.status_code == 201, added.text
            checked = await http.post("/api/llm/endpoints/gpu1/check")
            assert checked.json()["health"] == "healthy", checked.text
        yield url


@pytest.fixture
def dashboard_extra(registry: str) -> dict[str, Any]:
    return {"dashboard_llm_url": registry}


def image_stamps() -> dict[str, tuple[int, int]]:
    """(mtime_ns, size) of each committed image: what a rewrite would change."""
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in IMAGES.glob("*.png")}


def shell(script: str) -> list[str]:
    return ["sh", "-c", script]


async def in_state(stack: Stack, task_id: str, state: str) -> None:
    async def reached() -> None:
        task = await stack.task(task_id)
        assert task["state"] == state, task

    await eventually(reached, timeout=60)


async def test_screenshots_of_the_main_views_from_a_real_run(
    browser: Browser,
    stack: Stack,
    nats_server: NatsServer,
    registry: str,
    tmp_path: Path,
) -> None:
    committed = image_stamps()
    started = time.time_ns()
    stack.alerts_file.write_text("AGENTCOM_DASHBOARD_ALERT_FAILURE_RATE_PCT=10\n")
    parser = origin(tmp_path, {"parser.py": "VALUE = 2\n", "VERSION": "0.3\n"}, name="parser")
    calc = origin(tmp_path, {"calc.py": BUGGY, "test_calc.py": TEST}, name="calc")
    builder = await register(stack.scheduler, stack.admin_token, "builder", [str(parser)])
    coder = await register(stack.scheduler, stack.admin_token, "coder", [str(calc)])
    with (
        sidecar(
            builder,
            nats_server.address,
            tmp_path / "builder",
            allow_hub_commands=True,  # the checks' commands
            repos=[{"url": str(parser)}],
            max_verification_retries=0,
        ),
        sidecar(
            coder,
            nats_server.address,
            tmp_path / "coder",
            allow_hub_commands=True,
            repos=[{"url": str(calc)}],
            gateway_url=registry,
            max_verification_retries=0,
        ),
    ):
        fix = await stack.submit(
            description="Fix add() in calc.py so that test_calc passes",
            repo=str(calc),
            complexity_tier="standard",  # no command: the agent loop
            verification_steps=[{"type": "test_passes", "command": " ".join(RUN_TESTS)}],
        )
        patch = await stack.submit(
            description="Fix the parser constant",
            repo=str(parser),
            metadata={"command": shell("sed -i s/2/3/ parser.py; echo 'parser.py patched'")},
            verification_steps=[
                {"type": "test_passes", "command": "grep -q 'VALUE = 3' parser.py"},
                {"type": "file_exists", "path": "parser.py"},
            ],
        )
        bump = await stack.submit(
            description="Bump the version to 0.4",
            repo=str(parser),
            max_retries=0,
            metadata={"command": shell("echo 'VERSION: no such release branch' >&2; exit 1")},
        )
        # still running when the pictures are taken (cancelled at the end); in the low lane,
        # builder takes it after the other two
        tables = await stack.submit(
            description="Regenerate the parser tables",
            repo=str(parser),
            priority="low",
            metadata={
                "command": shell(
                    'for n in 1 2 3; do echo "table $n of 12 written"; done; '
                    "sleep 300; echo tables > tables.txt"
                )
            },
            verification_steps=[{"type": "file_exists", "path": "tables.txt"}],
        )
        for task, state in [(fix, "completed"), (patch, "completed"), (bump, "dead_letter")]:
            await in_state(stack, task["id"], state)
        await in_state(stack, tables["id"], "working")
        waiting = [  # builder is busy: these stay queued
            await stack.submit(description=description, repo=str(parser), priority=lane)
            for description, lane in [
                ("Write release notes for 0.4", "normal"),
                ("Add type hints to parser.py", "high"),
            ]
        ]

        page, console = await open_page(browser, stack, stack.admin_token)
        await expect(page.locator('[data-alert="high_failure_rate"]')).to_be_visible(timeout=10_000)
        await expect(page.locator("tr[data-task]")).to_have_count(6)
        await expect(page.locator('#tool-stream li[data-kind="tool_call"]')).to_have_count(4)
        output = page.locator('#tool-stream li[data-kind="progress"]')
        await expect(output.first).to_contain_text("table 3 of 12 written", timeout=10_000)
        # the gateway's ledger, flushed every 50 ms: the page reads it at load
        costs = page.locator('#llm-costs tr[data-cost-key="agent coder"]')
        await expect(costs).to_contain_text("5", timeout=10_000)
        await expect(page.locator("body")).not_to_contain_text("NaN")  # no broken ages
        shots = screenshot_dir(tmp_path)
        shots.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=shots / "dashboard.png", full_page=True)

        phone, _ = await open_page(browser, stack, stack.viewer_token, width=390, height=844)
        await phone.screenshot(path=shots / "dashboard-phone.png")

        login = await (await browser.new_context(viewport={"width": 900, "height": 560})).new_page()
        await login.goto(stack.dashboard + "/login")
        await login.screenshot(path=shots / "dashboard-login.png")
        assert console.errors == []
        async with stack.client() as http:  # nothing left running when the sidecars stop
            for task in [*waiting, tables]:
                cancelled = await http.post(f"{stack.queue}/api/tasks/{task['id']}/cancel")
                assert cancelled.status_code == 200, cancelled.text

    assert all((shots / name).stat().st_mtime_ns >= started for name in SHOTS)
    if os.environ.get("AGENTCOM_UPDATE_SCREENSHOTS") != "1":  # a plain run leaves them alone
        assert image_stamps() == committed
