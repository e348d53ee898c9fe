"""The task page in headless Chromium following a real agent loop: a real sidecar process runs
the loop against the fake model server of the tests (`tests/servers/fake_ollama.py`), whose
turns are tool calls (run the tests, read a file, write the fix, run the tests again). The page
shows each call with the `arguments` and `result` summaries exactly as the sidecar reported
them on `agentcom.evt.task.tool_call`: the first calls read with the task, the rest arriving
live while the page is open."""

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_stack import Stack
from nats.aio.client import Client
from nats.aio.msg import Msg
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
from test_browser import browser, open_page, screenshot_dir

import fake_ollama
from agentcom_common.testing import NatsServer

__all__ = ["browser"]  # the fixture, shared with test_browser

TASK_SHOT = "dashboard-task.png"
Json = dict[str, Any]


@pytest.fixture
def scheduler_extra(nats_server: NatsServer) -> dict[str, Any]:
    return scheduler_settings(nats_server)


@pytest.fixture
async def model() -> AsyncIterator[fake_ollama.FakeModel]:
    async with fake_ollama.serve() as fake:
        yield fake


def held(gate: asyncio.Event, turn: fake_ollama.Turn) -> fake_ollama.Turn:
    """`turn`, answered once the test opens `gate`."""

    async def answer(body: Json) -> tuple[int, Json]:
        await gate.wait()
        return await turn(body)

    return answer


def fixing_model(model: fake_ollama.FakeModel, gate: asyncio.Event) -> None:
    """The model's turns: see the test fail, read calc.py, (once `gate` opens) write the fix,
    see the test pass, say what it did."""
    call, reply = fake_ollama.call, fake_ollama.reply
    model.play(
        reply(tool_calls=[call("run_command", command=RUN_TESTS)], tokens=(120, 30)),
        reply(tool_calls=[call("read_file", path="calc.py")], tokens=(180, 20)),
        held(gate, reply(tool_calls=[call("write_file", path="calc.py", content=FIXED)])),
        reply(tool_calls=[call("run_command", command=RUN_TESTS)], tokens=(260, 25)),
        reply("Fixed add() in calc.py: it subtracted; test_calc passes now.", tokens=(300, 40)),
    )


async def reported_tool_calls(nc: Client) -> tuple[list[Json], Any]:
    """Every tool call report published from now on, as the sidecar sent it."""
    seen: list[Json] = []

    async def on_call(msg: Msg) -> None:
        seen.append(json.loads(msg.data))

    subscription = await nc.subscribe("agentcom.evt.task.tool_call", cb=on_call)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
    return seen, subscription


async def test_the_task_page_shows_a_real_agent_loops_tool_calls_with_arguments_and_results(
    browser: Browser,
    stack: Stack,
    nats_server: NatsServer,
    nc: Client,
    model: fake_ollama.FakeModel,
    tmp_path: Path,
) -> None:
    remote = origin(tmp_path, {"calc.py": BUGGY, "test_calc.py": TEST})
    gate = asyncio.Event()
    fixing_model(model, gate)
    reports, subscription = await reported_tool_calls(nc)
    made = await register(stack.scheduler, stack.admin_token, "coder")
    try:
        with sidecar(
            made,
            nats_server.address,
            tmp_path / "coder",
            allow_hub_commands=True,  # the test_passes check's command
            repos=[{"url": str(remote)}],
            gateway_url=model.url,
            max_verification_retries=0,
        ):
            # tall enough for the task page's tool calls and checks in one screenshot
            page, console = await open_page(browser, stack, stack.admin_token, height=1400)
            task = await stack.submit(
                description="Fix add() in calc.py so that test_calc passes",
                repo=str(remote),
                complexity_tier="standard",  # no command: the agent loop does it
                verification_steps=[
                    {"type": "test_passes", "command": " ".join(RUN_TESTS)},
                ],
            )
            row = page.locator(f'tr[data-task="{task["id"]}"]')
            await expect(row.locator("[data-state]")).to_have_text("working", timeout=60_000)
            await row.click()
            dialog = page.locator("#task-dialog")
            calls = dialog.locator("#task-calls > li")
            # the loop waits for the gate at its third turn: two calls so far
            await expect(calls).to_have_count(2, timeout=30_000)
            gate.set()  # the rest arrive while the page is open
            await expect(dialog.locator("#task-state")).to_have_text("completed", timeout=60_000)
            await expect(calls).to_have_count(4, timeout=10_000)

            mine = [r for r in reports if r["task_id"] == task["id"]]
            assert [r["tool"] for r in mine] == [
                "run_command",
                "read_file",
                "write_file",
                "run_command",
            ], reports
            # what the sidecar's summaries say: the tests failed, then passed after the write
            assert [mine[0]["result"], mine[3]["result"]] == ["exit 1", "exit 0"], mine
            assert json.loads(mine[1]["arguments"]) == {"path": "calc.py"}, mine
            for n, sent in enumerate(mine):
                shown = calls.nth(n)
                await expect(shown).to_have_attribute("data-tool", sent["tool"])
                await expect(shown.locator("[data-arguments]")).to_have_text(sent["arguments"])
                await expect(shown.locator("[data-result]")).to_have_text(sent["result"])
            await expect(dialog.locator("#task-checks")).to_have_attribute(
                "data-verification", "pass"
            )

            # from this real run: docs/img/ with AGENTCOM_UPDATE_SCREENSHOTS=1, else the tmp dir
            shots = screenshot_dir(tmp_path)
            shots.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=shots / TASK_SHOT)
            assert console.errors == []
    finally:
        gate.set()
        await subscription.unsubscribe()
