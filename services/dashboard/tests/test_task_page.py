"""The task page in headless Chromium: branch, commit, command, cost, output and the
verification checks, from the fields the sidecar's result really has (its own `run_checks`
judges the checks here, in a real workspace directory)."""

from pathlib import Path

from dashboard_stack import Stack, claim, report
from nats.aio.client import Client
from playwright.async_api import Browser, expect
from test_browser import browser, open_page

from agentcom_common.contracts import task as contracts
from agentcom_common.contracts.delivery import DeliveryReport, DiffReview, RiskAssessment
from agentcom_sidecar.verification import run_checks

__all__ = ["browser"]  # the fixture, shared with test_browser


async def test_the_task_page_shows_delivery_command_cost_and_checks(
    browser: Browser, stack: Stack, nc: Client, tmp_path: Path
) -> None:
    steps = [
        contracts.TestPasses(type="test_passes", command="echo '3 passed'"),
        contracts.CommandSucceeds(
            type="command_succeeds", command="sh -c \"echo 'lint: 1 error'; exit 1\""
        ),
    ]
    task = await stack.submit(
        description="Fix the failing parser test",
        repo="demo",
        metadata={"command": ["sh", "-c", "sed -i s/2/3/ parser.py"]},
        verification_steps=[s.model_dump() for s in steps],
    )
    claimed = await claim(nc)
    await report(nc, claimed, "accepted")
    checks = await run_checks(steps, tmp_path, {"PATH": "/usr/bin:/bin"})
    result = {
        "summary": "ran the command",
        "exit_code": 0,
        "output_tail": "patched parser.py\n",
        "verification": checks.as_dict(),
        "tokens_in": 1200,
        "tokens_out": 340,
        "cost_usd": 0.0123,
        "branch": f"agentcom/{claimed.id}",
        "base": "main",
        "commit": "0123456789abcdef0123456789abcdef01234567",
        "pushed": True,
        # as the sidecar's delivery report rides in the result (scheduler `_with_delivery`)
        "delivery": DeliveryReport(
            risk=RiskAssessment(tier=3, reasons=["CI config changed: .github/workflows/ci.yml"]),
            review=DiffReview(verdict="reject", comments=["drops the lint job"], model="rev:7b"),
            pull_request="https://github.example/acme/demo/pull/7",
            action="draft",
        ).model_dump(mode="json"),
    }
    await report(nc, claimed, "partial_pass", result=result)

    page, console = await open_page(browser, stack, stack.admin_token)
    row = page.locator(f'tr[data-task="{task["id"]}"]')
    await expect(row.locator("[data-state]")).to_have_text("partial_pass", timeout=10_000)
    await row.click()
    facts = page.locator("#task-facts")
    await expect(facts.locator('[data-fact="branch"] dd')).to_have_text(f"agentcom/{claimed.id}")
    await expect(facts.locator('[data-fact="commit"] dd')).to_have_text("0123456789ab")
    await expect(facts.locator('[data-fact="command"] dd')).to_have_text(
        "sh -c 'sed -i s/2/3/ parser.py'"
    )
    await expect(facts.locator('[data-fact="cost"] dd')).to_contain_text("$0.01")
    await expect(facts.locator('[data-fact="cost"] dd')).to_contain_text("1200 in / 340 out")
    risk = facts.locator('[data-fact="risk"] dd')
    await expect(risk.locator("[data-tier]")).to_have_text("tier 3")
    await expect(risk.locator("[data-action]")).to_have_text("draft pull request")
    await expect(risk).to_contain_text("CI config changed: .github/workflows/ci.yml")
    await expect(risk.locator("[data-review]")).to_have_text("review by rev:7b: reject")
    await expect(risk).to_contain_text("drops the lint job")
    await expect(page.locator("#task-output")).to_contain_text("patched parser.py")
    passed = page.locator('#task-checks [data-check="test_passes"]')
    await expect(passed).to_have_attribute("data-passed", "true")
    await expect(passed).to_contain_text("3 passed")
    failed = page.locator('#task-checks [data-check="command_succeeds"]')
    await expect(failed).to_have_attribute("data-passed", "false")
    await expect(failed).to_contain_text("failed")
    await expect(failed).to_contain_text("lint: 1 error")
    await expect(page.locator("#task-checks")).to_contain_text("1/2 passed")
    assert console.errors == []
