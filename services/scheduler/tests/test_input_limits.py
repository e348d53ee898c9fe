"""Request contracts are strict at the scheduler's edge: a number is a JSON number (issue 15)."""

import httpx
import pytest


@pytest.mark.parametrize("light", [True, "30", 30.5])
async def test_a_rate_limit_that_is_not_a_json_integer_is_a_422(
    api: httpx.AsyncClient, light: object
) -> None:
    assert (await api.post("/api/agents", json={"name": "poller"})).status_code in (200, 201)

    bad = await api.put("/api/agents/poller/rate-limits", json={"light": light})
    good = await api.put("/api/agents/poller/rate-limits", json={"light": 30})

    assert (bad.status_code, bad.json()["field"]) == (422, "light"), bad.text
    assert (good.status_code, good.json()["light"]) == (200, 30)
