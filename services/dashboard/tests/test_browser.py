"""The page in headless Chromium (Debian's `chromium`, driven by playwright).

Without chromium these tests skip and say how to install it; with AGENTCOM_REQUIRE_BROWSER=1
(set by .ci/run) they fail instead. The screenshots for docs/img/ are taken here: into the
test's tmp dir by default, so a test run leaves the git tree clean; into docs/img/ only with
AGENTCOM_UPDATE_SCREENSHOTS=1.
"""

import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from dashboard_stack import Stack, backup, claim, dead_letter, report
from nats.aio.client import Client
from nats.js import JetStreamContext
from playwright.async_api import Browser, Page, async_playwright, expect

from agentcom_common.contracts.agent import ToolCallReport
from agentcom_common.settings import CommonSettings

INSTALL = "apt-get update && apt-get install -y chromium"
IMAGES = Path(__file__).resolve().parents[3] / "docs" / "img"
REAL_RUN_SHOT = "dashboard-task-real.png"  # taken by test_task_live.py
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


async def populate(stack: Stack, nc: Client, js: JetStreamContext) -> None:
    """A believable afternoon: work in every state, a dead letter, agents, tool calls."""
    async with stack.client() as http:
        for name in ("gsv-sleeper-service", "rocinante", "tachikoma"):
            await http.post(f"{stack.scheduler}/api/agents", json={"name": name})
    done = [
        "Fix flaky test in payments/refund_spec",
        "Bump fastapi to 0.115 and regenerate lockfile",
        "Document the retry policy in docs/queue.md",
        "Add index on orders(customer_id, created_at)",
    ]
    for text in done:
        await stack.submit(description=text)
        task = await claim(nc)
        await report(nc, task, "accepted")
        await report(nc, task, "completed", result={"summary": "ok"})
    await dead_letter(stack, nc, "Upgrade Postgres driver (breaks on NUMERIC)")
    await stack.submit(description="Refactor the webhook signature check", priority="high")
    working = await claim(nc, "rocinante")
    await report(nc, working, "accepted", agent="rocinante")
    for n, (tool, args, result) in enumerate(
        [
            ("read_file", "src/webhooks/verify.py", "84 lines"),
            ("search", "hmac.compare_digest", "2 matches"),
            ("write_file", "src/webhooks/verify.py (+18 -9)", "written"),
            ("run_tests", "pytest tests/webhooks -q", "12 passed"),
        ]
    ):
        # The fields of the sidecar's ToolCallReport, the only ones the page reads.
        call = ToolCallReport(
            kind="tool_call",
            agent_id="rocinante",
            task_id=working.id,
            generation=working.generation,
            seq=n,
            tool=tool,
            arguments=args,
            result=result,
            ok=True,
            duration_ms=40.0,
        )
        await js.publish("agentcom.evt.task.tool_call", call.model_dump_json().encode())
    beat = {"kind": "heartbeat", "cpu_percent": 37.0, "ram_percent": 58.0, "vram_percent": 71.0}
    await nc.publish("agentcom.agent.rocinante.report", json.dumps(beat).encode())
    await stack.submit(description="Write release notes for 0.4", priority="low")
    await stack.submit(description="Triage new GitHub issues", priority="urgent")
    await stack.submit(description="Add OpenAPI examples to /api/tasks")


def screenshot_dir(tmp_path: Path) -> Path:
    """docs/img/ when AGENTCOM_UPDATE_SCREENSHOTS=1, else a directory under the test's tmp dir:
    rewriting the committed PNGs on every run left the tree dirty after `uv run pytest`."""
    if os.environ.get("AGENTCOM_UPDATE_SCREENSHOTS") == "1":
        return IMAGES
    return tmp_path / "img"


def image_stamps() -> dict[str, tuple[int, int]]:
    """(mtime_ns, size) of each committed image: what a rewrite would change."""
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in IMAGES.glob("*.png")}


async def test_screenshots_of_the_main_views(
    browser: Browser, stack: Stack, nc: Client, js: JetStreamContext, tmp_path: Path
) -> None:
    shots = screenshot_dir(tmp_path)
    committed = image_stamps()
    stack.alerts_file.write_text("AGENTCOM_DASHBOARD_ALERT_FAILURE_RATE_PCT=10\n")
    await populate(stack, nc, js)
    await stack.snapshots_after(30)
    shots.mkdir(parents=True, exist_ok=True)

    page, console = await open_page(browser, stack, stack.admin_token)
    await expect(page.locator("[data-alert]").first).to_be_visible(timeout=10_000)
    await expect(page.locator("#tool-stream li")).to_have_count(4, timeout=5000)
    await page.screenshot(path=shots / "dashboard.png", full_page=True)

    await page.locator("tr[data-task] >> text=Refactor the webhook").click()
    await expect(page.locator("#task-detail h3")).to_be_visible()
    await page.screenshot(path=shots / "dashboard-task.png")

    phone, _ = await open_page(browser, stack, stack.viewer_token, width=390, height=844)
    await phone.screenshot(path=shots / "dashboard-phone.png", full_page=True)

    login = await (await browser.new_context(viewport={"width": 900, "height": 560})).new_page()
    await login.goto(stack.dashboard + "/login")
    await login.screenshot(path=shots / "dashboard-login.png")
    assert console.errors == []
    # test_task_live.py takes dashboard-task-real.png from a real sidecar's run
    assert sorted(p.name for p in shots.glob("*.png")) == sorted(set(committed) - {REAL_RUN_SHOT})
    if os.environ.get("AGENTCOM_UPDATE_SCREENSHOTS") != "1":  # a plain run leaves them alone
        assert image_stamps() == committed
