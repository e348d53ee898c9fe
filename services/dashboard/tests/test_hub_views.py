"""The hub's healing, proposals and findings panels in headless Chromium, against a real hubfsm
beside the stack's queue and scheduler.

Healing is real: tasks claimed by an agent nobody runs get stuck, the hub's health assessment
sees them, its brain enters healing and requeues them; the panel shows the run with the issue's
evidence and each action. Proposals and findings are written by the hub's own stores (a
contemplation or improving cycle needs a model and a scanning agent), then an admin accepts one
proposal and rejects another with a reason through the hub's real routes.
"""

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dashboard_stack import Stack, claim, serve
from nats.aio.client import Client
from playwright.async_api import Browser, expect
from sqlalchemy.ext.asyncio import AsyncEngine
from test_access import logged_in
from test_browser import browser, open_page
from test_goal_panels import answer_dialogs

from agentcom_common.contracts.proposal import ProposalDraft
from agentcom_common.contracts.scan import ScanFinding
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import eventually
from agentcom_hubfsm.app import create_app as hub_app
from agentcom_hubfsm.contemplation import store as contemplation_store
from agentcom_hubfsm.improving import store as improving_store
from agentcom_hubfsm.improving.choose import Decision
from agentcom_hubfsm.settings import HubSettings

__all__ = ["browser"]  # the fixture, shared with the other browser tests

NEVER = timedelta(hours=1)
FAST_HUB: dict[str, Any] = {
    "hub_tick_interval": timedelta(milliseconds=50),
    "hub_leader_interval": timedelta(milliseconds=200),
    "hub_health_interval": timedelta(milliseconds=100),
    "hub_health_timeout": timedelta(seconds=2),
    "hub_stuck_task_after": timedelta(milliseconds=300),
    "hub_healing_cooldown": NEVER,  # one run
    "hub_contemplation_interval": NEVER,
    "hub_goal_sweep": timedelta(milliseconds=200),
    "hub_llm_backoff": NEVER,  # the accepted proposal's goal waits quietly for a planner
}


@pytest.fixture
def scheduler_extra() -> dict[str, Any]:
    # its own stranded-task sweeps stay out of the way: the hub's healing is under test
    return {"scheduler_working_offline_timeout": NEVER, "scheduler_accept_timeout": NEVER}


@pytest.fixture
async def hub_url(settings: CommonSettings, tmp_path: Path) -> AsyncIterator[str]:
    hub = HubSettings.model_validate(
        settings.model_dump() | {"hub_data_dir": tmp_path / "hub"} | FAST_HUB
    )
    async with serve(hub_app(hub)) as url:
        yield url


@pytest.fixture
def dashboard_extra(hub_url: str) -> dict[str, Any]:
    return {"dashboard_hub_url": hub_url}


def draft(title: str) -> ProposalDraft:
    return ProposalDraft(
        title=title,
        problem="checkout is slow",
        solution="cache the catalogue",
        rationale="the catalogue is read on every request",
        why_now="run latency p95 rose",
        why_not="a cache can serve stale prices",
        impact="high",
        effort="low",
        success_criteria=["the catalogue is read once a minute"],
    )


async def hub_json(stack: Stack, url: str) -> Any:
    async with stack.client() as http:
        reply = await http.get(url)
    assert reply.status_code == 200, reply.text
    return reply.json()


async def test_a_real_healing_run_shows_its_issue_evidence_and_actions(
    browser: Browser, stack: Stack, hub_url: str, nc: Client
) -> None:
    ids: list[str] = []
    for i in range(3):
        await stack.submit(description=f"held {i}", max_retries=2)
        ids.append((await claim(nc, "ghost")).id)  # an agent the scheduler never heard of

    async def healed() -> dict[str, Any]:
        runs = (await hub_json(stack, f"{hub_url}/api/hub/healing"))["runs"]
        assert runs, runs
        assert runs[0]["ended_at"], runs
        return runs[0]

    run = await eventually(healed, timeout=30)
    page, console = await open_page(browser, stack, stack.viewer_token)
    shown = page.locator(f'#healing [data-healing-run="{run["id"]}"]')
    await expect(shown).to_have_attribute("data-outcome", run["outcome"], timeout=10_000)
    issue = shown.locator('[data-issue="stuck_tasks"]')
    await expect(issue).to_contain_text("critical")
    await expect(issue).to_contain_text("seen by queue")
    await expect(issue.locator(".evidence")).to_contain_text(ids[0])
    for task_id in ids:
        action = shown.locator(f'[data-action="requeue_stuck_task"][data-target="{task_id}"]')
        await expect(action).to_have_attribute("data-outcome", "done")
        await expect(action.locator(".evidence")).to_contain_text("agent_state=unknown")
    assert console.errors == []


async def test_an_admin_accepts_and_rejects_proposals_and_sees_findings(
    browser: Browser, stack: Stack, hub_url: str, engine: AsyncEngine
) -> None:
    async with engine.begin() as conn:
        cycle = await contemplation_store.start_cycle(conn, datetime.now(UTC), "shop")
        cache, rewrite = await contemplation_store.add(
            conn, cycle.id, "shop", [draft("Cache the catalogue"), draft("Rewrite in Rust")]
        )
        scan = await improving_store.start_cycle(conn, datetime.now(UTC))
        finding = ScanFinding(
            category="complexity",
            severity="medium",
            title="Split checkout()",
            subject="shop.checkout",
            files=["src/shop/app.py"],
            evidence=["cyclomatic complexity 31"],
            fingerprint="0123456789abcdef",
        )
        dropped = Decision(
            "shop",
            finding,
            kept=False,
            reason="cooldown: seen 2 cycles ago",
            kind="fingerprint_cooldown",
        )
        await improving_store.add(conn, scan.id, dropped, None, improving_store.new_id())

    page, console = await open_page(browser, stack, stack.admin_token)
    asked = answer_dialogs(page, ["not worth a rewrite"])
    first = page.locator(f'#proposals [data-proposal="{cache}"]')
    await expect(first).to_have_attribute("data-proposal-state", "pending", timeout=10_000)
    await expect(first.locator('[data-fact="why_not"] dd')).to_have_text(
        "a cache can serve stale prices"
    )
    await first.locator('[data-proposal-action="accept"]').click()
    await expect(first).to_have_attribute("data-proposal-state", "accepted", timeout=10_000)
    page_ = await hub_json(stack, f"{hub_url}/api/hub/proposals")
    accepted = next(p for p in page_["proposals"] if p["id"] == cache)
    assert accepted["goal_id"], accepted
    await expect(first.locator("[data-proposal-goal]")).to_contain_text(accepted["goal_id"])

    second = page.locator(f'#proposals [data-proposal="{rewrite}"]')
    await second.locator('[data-proposal-action="reject"]').click()
    await expect(second).to_have_attribute("data-proposal-state", "rejected", timeout=10_000)
    await expect(second.locator("[data-proposal-reason]")).to_contain_text("not worth a rewrite")
    page_ = await hub_json(stack, f"{hub_url}/api/hub/proposals")
    rejected = next(p for p in page_["proposals"] if p["id"] == rewrite)
    assert (rejected["state"], rejected["reason"]) == ("rejected", "not worth a rewrite")
    assert asked == [
        'Accept "Cache the catalogue"? The hub makes it a goal.',
        "Why is it rejected? (the next contemplation is told)",
        'Reject "Rewrite in Rust"?',
    ]

    row = page.locator("#findings tr[data-finding]")
    await expect(row).to_have_attribute("data-finding-state", "dropped")
    await expect(row).to_contain_text("Split checkout()")
    await expect(row).to_contain_text("cooldown: seen 2 cycles ago")
    assert console.errors == []


async def test_a_rejection_needs_a_reason(stack: Stack) -> None:
    client, csrf = await logged_in(stack, stack.admin_token)
    async with contextlib.aclosing(client):
        refused = await client.post(
            "/ui/hub/proposals/prop-0123456789abcdef/reject",
            json={"reason": " "},
            headers={"X-CSRF-Token": csrf},
        )
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == "reason"
    assert "say why the proposal is rejected" in refused.json()["detail"]  # ours, not the hub's
