"""The "new task" form: in headless Chromium it submits through the dashboard to the real queue
and shows the queue's field refusals beside the field; over plain HTTP the route is guarded as
every other action (admin session, CSRF token, same origin)."""

import contextlib

import pytest
from dashboard_stack import Stack
from playwright.async_api import Browser, expect
from test_access import logged_in
from test_browser import browser, open_page

__all__ = ["browser"]  # the fixture, shared with test_browser


async def test_a_task_submitted_from_the_form_reaches_the_queue(
    browser: Browser, stack: Stack
) -> None:
    page, console = await open_page(browser, stack, stack.admin_token)
    await page.click("#new-task")
    form = page.locator("#submit-form")
    await expect(form).to_be_visible()

    # the queue's own refusal (an empty description), named by the queue, shown by the field
    await page.click("#submit-task")
    await expect(form.locator('[data-error="description"]')).to_contain_text("description")
    await expect(form.locator('[name="description"]')).to_have_attribute("aria-invalid", "true")

    # a dependency id the queue refuses: its `depends_on.0` lands beside "depends on"
    await form.locator('[name="description"]').fill("Fix the failing parser test")
    await form.locator('[name="depends_on"]').fill("not-a-task")
    await page.click("#submit-task")
    await expect(form.locator('[data-error="depends_on"]')).to_contain_text("depends_on")
    await expect(form.locator('[data-error="description"]')).to_have_text("")

    # a check of no known kind: refused by the form's own parsing, beside "checks"
    await form.locator('[name="depends_on"]').fill("")
    await form.locator('[name="checks"]').fill("tests_pass:pytest -q")
    await page.click("#submit-task")
    await expect(form.locator('[data-error="checks"]')).to_contain_text("tests_pass")

    await form.locator('[name="repo"]').fill("calc")
    await form.locator('[name="lane"]').select_option("high")
    await form.locator('[name="tier"]').select_option("trivial")
    await form.locator('[name="command"]').fill("sh -c 'sed -i s/2/3/ parser.py'")
    await form.locator('[name="checks"]').fill("test_passes:pytest -q\nfile_exists:parser.py")
    await page.click("#submit-task")
    await expect(page.locator("#submit-dialog")).not_to_be_visible()
    row = page.locator("tr[data-task]", has_text="Fix the failing parser test")
    await expect(row.locator("[data-state]")).to_have_text("queued", timeout=10_000)

    task = await stack.task(str(await row.get_attribute("data-task")))
    assert task["description"] == "Fix the failing parser test"
    assert task["priority"] == "high"
    assert task["repo"] == "calc"
    assert task["complexity"]["tier"] == "trivial"
    assert task["complexity"]["source"] == "explicit"
    assert task["metadata"]["command"] == ["sh", "-c", "sed -i s/2/3/ parser.py"]
    assert [s["type"] for s in task["verification_steps"]] == ["test_passes", "file_exists"]
    assert task["verification_steps"][0]["command"] == "pytest -q"
    # chromium logs each refused POST as a failed load; nothing else may be logged
    refused = "the server responded with a status of 422"
    assert [e for e in console.errors if refused not in e] == []


async def test_a_viewer_sees_no_form(browser: Browser, stack: Stack) -> None:
    page, console = await open_page(browser, stack, stack.viewer_token)
    await expect(page.locator("#new-task")).to_have_count(0)
    await expect(page.locator("#submit-form")).to_have_count(0)
    assert console.errors == []


@pytest.mark.parametrize(
    ("who", "headers", "code"),
    [
        ("admin", {}, "csrf_failed"),
        ("admin", {"Origin": "http://evil.example"}, "bad_origin"),
        ("viewer", {}, "admin_required"),
    ],
)
async def test_submitting_needs_an_admin_with_csrf_from_this_origin(
    stack: Stack, who: str, headers: dict[str, str], code: str
) -> None:
    token = stack.admin_token if who == "admin" else stack.viewer_token
    client, csrf = await logged_in(stack, token)
    sent = headers | ({"X-CSRF-Token": csrf} if "Origin" in headers or who == "viewer" else {})
    async with contextlib.aclosing(client):
        refused = await client.post("/ui/tasks", json={"description": "sneaked in"}, headers=sent)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == code
    async with stack.client() as http:
        listed = (await http.get(f"{stack.queue}/api/tasks")).json()["tasks"]
    assert not [t for t in listed if t["description"] == "sneaked in"]
