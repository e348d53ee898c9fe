"""The costs panel in headless Chromium, from a real llm-registry's ledger: chat calls go
through its gateway to a fake Ollama upstream with an agent's token and the admin's, and the
panel shows them as a table and a bar per model and per agent (the caller)."""

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from dashboard_stack import Stack
from playwright.async_api import Browser, expect
from sqlalchemy.ext.asyncio import AsyncEngine
from test_browser import browser, open_page

from agentcom_common import auth
from agentcom_common.settings import CommonSettings
from agentcom_llm_registry.settings import LlmSettings
from fake_llm import FakeLLM, serve as serve_registry

__all__ = ["browser"]  # the fixture, shared with the other browser tests

HI = {"model": "qwen3:8b", "messages": [{"role": "user", "content": "hi"}], "stream": False}


@pytest.fixture
async def registry(
    settings: CommonSettings, admin_token: str, engine: AsyncEngine, tmp_path: Path
) -> AsyncIterator[str]:
    llm = LlmSettings.model_validate(
        settings.model_dump()
        | {
            "llm_health_interval": timedelta(milliseconds=200),
            "llm_ledger_dir": str(tmp_path / "ledger"),
        }
    )
    model = FakeLLM("ollama", models=["qwen3:8b"])
    await model.start()
    builder = (await auth.issue(engine, auth.Role.AGENT, "builder")).token
    try:
        async with serve_registry(llm) as url:
            admin = {"Authorization": f"Bearer {admin_token}"}
            async with httpx.AsyncClient(base_url=url, headers=admin, timeout=30) as http:
                endpoint = {"id": "local1", "provider": "ollama", "base_url": model.url}
                endpoint |= {"classes": ["local"], "models": ["qwen3:8b"]}
                assert (await http.post("/api/llm/endpoints", json=endpoint)).status_code == 201
                await http.post("/api/llm/endpoints/local1/check")
                for token in (builder, builder, admin_token):
                    sent = await http.post(
                        "/api/chat", json=HI, headers={"Authorization": f"Bearer {token}"}
                    )
                    assert sent.status_code == 200, sent.text
            yield url
    finally:
        await model.stop()


@pytest.fixture
def dashboard_extra(registry: str) -> dict[str, Any]:
    return {"dashboard_llm_url": registry}


async def test_costs_by_model_and_by_agent_from_the_ledger(browser: Browser, stack: Stack) -> None:
    page, console = await open_page(browser, stack, stack.viewer_token)
    by_model = page.locator('#llm-costs table[data-costs="model"]')
    row = by_model.locator('tr[data-cost-key="qwen3:8b"]')
    await expect(row).to_contain_text("3", timeout=10_000)
    await expect(row.locator(".cost-bar .bar i")).to_be_attached()
    by_agent = page.locator('#llm-costs table[data-costs="agent"]')
    await expect(by_agent.locator('tr[data-cost-key="builder"] td').nth(1)).to_have_text("2")
    await expect(by_agent.locator("tbody tr")).to_have_count(2)
    await expect(page.locator("#llm-costs pre")).to_have_count(0)  # no raw JSON any more
    assert console.errors == []
