"""The page's actions in headless Chromium: a cancel asks first, a restart of a sidecar nothing
supervises is disabled with the reason (the scheduler would refuse it with `not_supervised`)."""

import json

from dashboard_stack import Stack
from nats.js import JetStreamContext
from playwright.async_api import Browser, Dialog, expect
from test_browser import browser, open_page

from agentcom_common import subjects
from agentcom_common.testing import eventually

__all__ = ["browser"]  # the fixture, shared with test_browser


async def test_cancel_asks_first_and_a_no_keeps_the_task(browser: Browser, stack: Stack) -> None:
    page, console = await open_page(browser, stack, stack.admin_token)
    task = await stack.submit(description="Rename the billing module")
    button = page.locator(f'[data-cancel="{task["id"]}"]')
    await expect(button).to_be_visible(timeout=10_000)

    asked: list[str] = []

    async def no(dialog: Dialog) -> None:
        asked.append(dialog.message)
        await dialog.dismiss()

    page.once("dialog", no)
    await button.click()
    await eventually(lambda: _asked(asked), timeout=20)
    assert "Rename the billing module" in asked[0]
    assert (await stack.task(task["id"]))["state"] == "queued"

    async def yes(dialog: Dialog) -> None:
        await dialog.accept()

    page.once("dialog", yes)
    await button.click()
    row = page.locator(f'tr[data-task="{task["id"]}"] [data-state]')
    await expect(row).to_have_text("cancelled", timeout=10_000)
    assert (await stack.task(task["id"]))["state"] == "cancelled"
    assert console.errors == []


async def _asked(asked: list[str]) -> None:
    assert asked


async def test_restart_is_disabled_with_the_reason_for_an_unsupervised_sidecar(
    browser: Browser, stack: Stack, js: JetStreamContext
) -> None:
    async with stack.client() as http:
        for name in ("by-hand", "under-systemd"):
            assert (
                await http.post(f"{stack.scheduler}/api/agents", json={"name": name})
            ).is_success
        for name, supervisor in (("by-hand", "none"), ("under-systemd", "systemd")):
            hello = {"kind": "hello", "agent_id": name, "state": "idle", "supervisor": supervisor}
            await js.publish(subjects.agent_report(name), json.dumps(hello).encode())

        async def said_hello() -> None:
            for name, supervisor in (("by-hand", "none"), ("under-systemd", "systemd")):
                got = (await http.get(f"{stack.scheduler}/api/agents/{name}")).json()
                assert got["supervisor"] == supervisor

        await eventually(said_hello, timeout=30)

    page, console = await open_page(browser, stack, stack.admin_token)
    unsupervised = page.locator('[data-restart="by-hand"]')
    await expect(unsupervised).to_be_disabled(timeout=10_000)
    await expect(unsupervised).to_have_attribute(
        "title", "not supervised: its sidecar was started by hand, a restart would stop it for good"
    )
    await expect(page.locator('[data-restart="under-systemd"]')).to_be_enabled()
    assert console.errors == []
