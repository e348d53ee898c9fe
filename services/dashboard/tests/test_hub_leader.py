"""The hub panel follows a change of the hub's leader without a reload: two real hubfsm
replicas share the database, the dashboard reads the second; the first leads, then stops, the
second takes over, and the open page shows the new leader (no event says so: the page re-reads
the hub)."""

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from dashboard_stack import Stack, serve
from playwright.async_api import Browser, expect
from test_browser import browser, open_page

from agentcom_common.settings import CommonSettings
from agentcom_common.testing import eventually
from agentcom_hubfsm.app import create_app as hub_app
from agentcom_hubfsm.settings import HubSettings

__all__ = ["browser"]  # the fixture, shared with the other browser tests

FAST = {
    "hub_tick_interval": timedelta(milliseconds=50),
    "hub_leader_interval": timedelta(seconds=1),  # no takeover on a merely busy machine
    "hub_contemplation_interval": timedelta(hours=1),
}


@pytest.fixture
async def replicas(
    settings: CommonSettings, tmp_path: Path, admin_token: str
) -> AsyncIterator[tuple[contextlib.AsyncExitStack, str]]:
    """The first replica, leading (in an exit stack the test closes to stop it), and the
    second's URL, started once the first leads."""

    def app(name: str) -> Any:
        own = settings.model_dump() | {"hub_data_dir": tmp_path / name} | FAST
        return hub_app(HubSettings.model_validate(own))

    async with contextlib.AsyncExitStack() as first:
        first_url = await first.enter_async_context(serve(app("a")))
        headers = {"Authorization": f"Bearer {admin_token}"}

        async def leads() -> None:
            async with httpx.AsyncClient(headers=headers, timeout=10) as http:
                shown = (await http.get(f"{first_url}/api/hub/state")).json()
            assert shown["leader"] is not None, shown

        await eventually(leads, timeout=30)
        async with serve(app("b")) as second_url:
            yield first, second_url


@pytest.fixture
def dashboard_extra(replicas: tuple[contextlib.AsyncExitStack, str]) -> dict[str, Any]:
    return {"dashboard_hub_url": replicas[1]}


async def leader(stack: Stack, url: str) -> str:
    async with stack.client() as http:
        shown = (await http.get(f"{url}/api/hub/state")).json()
    assert shown["leader"] is not None, shown
    return shown["leader"]


async def test_the_hub_panel_shows_a_new_leader_live(
    browser: Browser, stack: Stack, replicas: tuple[contextlib.AsyncExitStack, str]
) -> None:
    first, url = replicas
    before = await eventually(lambda: leader(stack, url), timeout=30)
    page, console = await open_page(browser, stack, stack.viewer_token)
    shown = page.locator("#panel-hub [data-hub-leader]")
    await expect(shown).to_have_text(f"leader: {before}", timeout=10_000)

    await first.aclose()  # the leader stops: the other replica takes over

    async def moved() -> str:
        now = await leader(stack, url)
        assert now != before, now
        return now

    after = await eventually(moved, timeout=30)
    await expect(shown).to_have_text(f"leader: {after}", timeout=15_000)
    assert console.errors == []
