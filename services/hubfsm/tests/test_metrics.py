"""The hub's sampled instruments, read back from its `/metrics` as Prometheus would scrape them."""

import httpx
import pytest

from agentcom_common.testing import eventually, metric

GOAL = {
    "title": "Add a health route",
    "description": "GET /healthz answers 200",
    "success_criteria": ["GET /healthz answers 200"],
    "repo": "https://example.invalid/repo.git",
}

pytestmark = pytest.mark.usefixtures("meters")


async def test_hub_state_and_goals_by_state_are_sampled(api: httpx.AsyncClient) -> None:
    goal = (await api.post("/api/goals", json=GOAL)).json()
    cancelled = await api.post(f"/api/goals/{goal['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text

    async def scraped() -> None:
        text = (await api.get("/metrics")).text
        assert metric(text, "agentcom_goals", state="cancelled") == 1
        assert metric(text, "agentcom_hub_state") == 1  # one state at a time, whichever
        assert metric(text, "agentcom_hub_state", state="resting") in (0, 1)
        assert metric(text, "agentcom_goal_verifications_total", result="passed") == 0
        assert "# TYPE agentcom_goal_verifications_total counter" in text

    await eventually(scraped, timeout=10)
