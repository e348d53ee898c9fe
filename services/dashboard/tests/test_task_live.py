"""The task page in headless Chromium following a real sidecar doing a real shell task: the
command's output arrives live as the sidecar's progress `lines`, and when the task ends the open
page shows its branch, commit, pull request, checks and state without being reopened."""

from pathlib import Path
from typing import Any

import pytest
from dashboard_stack import Stack
from playwright.async_api import Browser, expect
from real_sidecar import origin, register, scheduler_settings, sidecar
from test_browser import browser, open_page, screenshot_dir

from agentcom_common.testing import NatsServer
from fake_github import serve as serve_github

__all__ = ["browser"]  # the fixture, shared with test_browser

TASK_SHOT = "dashboard-task-shell.png"


@pytest.fixture
def scheduler_extra(nats_server: NatsServer) -> dict[str, Any]:
    return scheduler_settings(nats_server)


async def test_the_open_task_page_follows_a_real_sidecar_live(
    browser: Browser, stack: Stack, nats_server: NatsServer, tmp_path: Path
) -> None:
    remote = origin(tmp_path, {"parser.py": "VALUE = 2\n"})
    gate = tmp_path / "gate"
    # prints a line, waits for the test to open the page, then fixes the file
    command = [
        "sh",
        "-c",
        f'echo "patching parser.py"; while [ ! -e {gate} ]; do sleep 0.05; done; '
        'sed -i s/2/3/ parser.py; echo "parser.py patched"',
    ]
    made = await register(stack.scheduler, stack.admin_token, "builder")
    with (
        serve_github() as github,
        sidecar(
            made,
            nats_server.address,
            tmp_path / "builder",
            allow_hub_commands=True,
            repos=[{"url": str(remote), "github": "acme/calc"}],
            github_token="ghp_" + "x" * 36,
            github_api_url=github.url,
        ),
    ):
        page, console = await open_page(browser, stack, stack.admin_token)
        task = await stack.submit(
            description="Fix the parser constant",
            repo=str(remote),
            metadata={"command": command},
            verification_steps=[
                {"type": "test_passes", "command": "grep -q 'VALUE = 3' parser.py"},
                {"type": "file_exists", "path": "parser.py"},
            ],
        )
        row = page.locator(f'tr[data-task="{task["id"]}"]')
        await expect(row.locator("[data-state]")).to_have_text("working", timeout=60_000)
        await row.click()
        dialog = page.locator("#task-dialog")
        await expect(dialog.locator("#task-state")).to_have_text("working")
        await expect(dialog.locator("#task-output")).to_contain_text(
            "patching parser.py", timeout=30_000
        )
        await expect(dialog.locator('[data-fact="command"] dd')).to_contain_text("sed -i s/2/3/")

        gate.touch()
        await expect(dialog.locator("#task-state")).to_have_text("completed", timeout=90_000)
        await expect(dialog.locator("#task-output")).to_contain_text("parser.py patched")
        branch = f"agentcom/builder/{task['id']}-fix-the-parser-constant"
        await expect(dialog.locator('[data-fact="branch"] dd')).to_have_text(branch)
        commit = (await stack.task(task["id"]))["result"]["commit"]
        await expect(dialog.locator('[data-fact="commit"] dd')).to_have_text(commit[:12])
        pr = dialog.locator('[data-fact="pr"] a')
        await expect(pr).to_have_attribute("href", "https://github.example/acme/calc/pull/1")
        checks = dialog.locator("#task-checks")
        await expect(checks).to_have_attribute("data-verification", "pass")
        await expect(checks).to_contain_text("2/2 passed")
        passed = checks.locator('[data-check="test_passes"]')
        await expect(passed).to_have_attribute("data-passed", "true")
        assert github.pulls[0]["head"]["ref"] == branch
        # from this real run: docs/img/ with AGENTCOM_UPDATE_SCREENSHOTS=1, else the tmp dir
        shots = screenshot_dir(tmp_path)
        shots.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=shots / TASK_SHOT)
        assert console.errors == []
