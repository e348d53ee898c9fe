"""The page in headless Chromium (Debian's `chromium`, driven by playwright).

Without chromium these tests skip and say how to install it; with AGENTCOM_REQUIRE_BROWSER=1
(set by .ci/run) they fail instead. The screenshots for docs/img/ are taken by the tests with
real sidecars (test_screenshots.py, test_agent_loop_page.py, test_task_live.py): into the test's
tmp dir by default, so a test run leaves the git tree clean; into docs/img/ (`screenshot_dir`)
only with AGENTCOM_UPDATE_SCREENSHOTS=1.
"""

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from dashboard_stack import Stack, backup, claim, dead_letter, report
from nats.aio.client import Client
from playwright.async_api import Browser, Page, async_playwright, expect

from agentcom_common.settings import CommonSettings

INSTALL = "apt-get update && apt-get install -y chromium"
IMAGES = Path(__file__).resolve().parents[3] / "docs" / "img"
LIVE_WITHIN_MS = 1000  # the acceptance bar: a change shows on the page within 1 s


def chromium_path() -> str | None:
    return (
        os.environ.get("AGENTCOM_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    path = chromium_path()
    if path is None:
        message = f"browser tests need Debian's chromium; install it with: {INSTALL}"
        if os.environ.get("AGENTCOM_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=path, args=["--no-sandbox", "--disable-gpu"]
        )
        yield launched
        await launched.close()


class Console:
    """Console errors and uncaught exceptions of a page."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))


async def open_page(
    browser: Browser, stack: Stack, token: str | None, width: int = 1360, height: int = 900
) -> tuple[Page, Console]:
    context = await browser.new_context(viewport={"width": width, "height": height})
    page = await context.new_page()
    console = Console(page)
    if token is None:
        await page.goto(stack.dashboard + "/")
    else:
        await page.goto(stack.dashboard + "/login")
        await page.fill("#token", token)
        await page.click("#login-submit")
        await page.wait_for_url(stack.dashboard + "/")
    await expect(page.locator("#conn")).to_have_text("live", timeout=20_000)
    return page, console


async def test_page_loads_clean_and_a_task_changes_state_live(
    browser: Browser, stack: Stack, nc: Client
) -> None:
    page, console = await open_page(browser, stack, None)

    task = await stack.submit(description="Add a health check to the billing service")
    row = page.locator(f'tr[data-task="{task["id"]}"]')
    await expect(row).to_be_visible(timeout=LIVE_WITHIN_MS)
    await expect(row.locator("[data-state]")).to_have_text("queued", timeout=LIVE_WITHIN_MS)
    await expect(row).to_contain_text("Add a health check")
    # its age, from `updated_at` (a second `ago` in app.js once made every age "NaN d")
    await expect(row.locator("td[title]")).to_have_text(re.compile(r"^\d+s ago$"))

    claimed = await claim(nc)
    await expect(row.locator("[data-state]")).to_have_text("assigned", timeout=LIVE_WITHIN_MS)
    await report(nc, claimed, "accepted")
    await expect(row.locator("[data-state]")).to_have_text("working", timeout=LIVE_WITHIN_MS)
    await report(nc, claimed, "completed", result={"summary": "done"})
    await expect(row.locator("[data-state]")).to_have_text("completed", timeout=LIVE_WITHIN_MS)

    assert console.errors == []


async def test_the_last_backup_tile_shows_none_yet_then_a_real_failed_backup(
    browser: Browser, stack: Stack, settings: CommonSettings, tmp_path: Path
) -> None:
    page, console = await open_page(browser, stack, None)
    tile, note = page.locator("#kpi-backup"), page.locator("#kpi-backup-note")
    await expect(tile).to_have_text("none yet", timeout=10_000)
    await expect(note).to_have_text("no attempt recorded")

    home = tmp_path / "cli-home"
    home.mkdir()
    (home / "backups").write_text("a file where the backups directory belongs")
    assert (await backup(settings, home)).returncode == 1

    # the page re-reads the snapshots every 5 s
    await expect(note).to_contain_text(
        "last attempt failed: cannot write the backup", timeout=15_000
    )
    await expect(tile).to_have_class("kpi-value bad")
    await expect(tile).to_have_text("none yet")  # nothing good, still
    assert console.errors == []


async def test_the_page_catches_up_on_what_happened_while_its_socket_was_down(
    browser: Browser, stack: Stack, nc: Client
) -> None:
    page, console = await open_page(browser, stack, None)
    before = await stack.submit(description="seen live")
    await expect(page.locator(f'tr[data-task="{before["id"]}"]')).to_be_visible(timeout=5000)

    await page.evaluate(
        "() => { const ws = window.agentcomSocket; ws.onclose = null; ws.close(); }"
    )
    missed = await stack.submit(description="happened while offline")
    await claim(nc)  # the first task: assigned while the page was not listening
    await stack.submit(description="also while offline")
    await page.evaluate("() => connect()")  # what the page does on its own after a drop

    row = page.locator(f'tr[data-task="{missed["id"]}"]')
    await expect(row).to_be_visible(timeout=5000)
    assigned = page.locator(f'tr[data-task="{before["id"]}"] [data-state]')
    await expect(assigned).to_have_text("assigned", timeout=5000)
    await expect(page.locator("tr[data-task]")).to_have_count(3)
    assert console.errors == []


async def test_admin_retries_a_dead_letter_from_the_page(
    browser: Browser, stack: Stack, nc: Client
) -> None:
    page, console = await open_page(browser, stack, stack.admin_token)
    task = await dead_letter(stack, nc, "Migrate the orders table")
    item = page.locator(f'li[data-dead="{task["id"]}"]')
    await expect(item).to_be_visible(timeout=5000)
    await expect(item).to_contain_text("compiler exploded")

    await item.locator(f'[data-retry="{task["id"]}"]').click()

    await expect(item).to_have_count(0, timeout=5000)
    row = page.locator(f'tr[data-task="{task["id"]}"] [data-state]')
    await expect(row).to_have_text("queued", timeout=5000)
    assert (await stack.task(task["id"]))["state"] == "queued"
    assert console.errors == []


async def test_a_viewer_sees_no_retry_and_is_refused_anyway(
    browser: Browser, stack: Stack, nc: Client
) -> None:
    page, _ = await open_page(browser, stack, stack.viewer_token)
    task = await dead_letter(stack, nc)
    item = page.locator(f'li[data-dead="{task["id"]}"]')
    await expect(item).to_be_visible(timeout=5000)
    assert await item.locator("[data-retry]").count() == 0

    status = await page.evaluate(
        """async (id) => {
            const snap = await (await fetch('/ui/snapshot')).json();
            const res = await fetch(`/ui/tasks/${id}/retry`,
                {method: 'POST', headers: {'X-CSRF-Token': snap.csrf}});
            return res.status;
        }""",
        task["id"],
    )
    assert status == 403
    assert (await stack.task(task["id"]))["state"] == "dead_letter"


def screenshot_dir(tmp_path: Path) -> Path:
    """docs/img/ when AGENTCOM_UPDATE_SCREENSHOTS=1, else a directory under the test's tmp dir:
    rewriting the committed PNGs on every run left the tree dirty after `uv run pytest`."""
    if os.environ.get("AGENTCOM_UPDATE_SCREENSHOTS") == "1":
        return IMAGES
    return tmp_path / "img"
