"""Goal intake over HTTP and NATS: the lifecycle's person-driven moves, idempotency, errors."""

import json
from typing import Any

import httpx
import pytest
from nats.aio.client import Client

from agentcom_common import micro
from agentcom_common.contracts.hub import GoalDetail, GoalRef, GoalView, SubmitGoal
from agentcom_common.errors import ConflictError, NotFoundError

Json = dict[str, Any]
GOAL: Json = {
    "title": "Add a health route",
    "description": "GET /healthz answers 200",
    "success_criteria": ["GET /healthz answers 200", "a test covers it"],
    "repo": "https://example.invalid/repo.git",
}


async def submit(api: httpx.AsyncClient, **extra: Any) -> httpx.Response:
    return await api.post("/api/goals", json=GOAL | extra)


async def test_a_goal_is_stored_with_its_history_and_announced(
    api: httpx.AsyncClient, nc: Client
) -> None:
    sub = await nc.subscribe("agentcom.evt.goal.>")  # pyright: ignore[reportUnknownMemberType]
    reply = await submit(api, priority="high", budget_tokens=50_000, budget_usd=2.5)
    assert reply.status_code == 201, reply.text
    goal = reply.json()
    assert goal["state"] == "submitted"
    assert goal["id"].startswith("goal-")
    assert (goal["priority"], goal["budget_tokens"], goal["budget_usd"]) == ("high", 50_000, 2.5)

    event = await sub.next_msg(timeout=10)
    assert event.subject == "agentcom.evt.goal.submitted"
    assert json.loads(event.data)["goal_id"] == goal["id"]

    shown = (await api.get(f"/api/goals/{goal['id']}")).json()
    assert shown["success_criteria"] == GOAL["success_criteria"]
    # the goal driver may have begun planning it: the first move is the creation
    assert (shown["history"][0]["from_state"], shown["history"][0]["to_state"]) == (
        None,
        "submitted",
    )
    assert shown["tasks"] == []
    assert shown["verifications"] == []


async def test_a_repeated_client_key_returns_the_first_goal(api: httpx.AsyncClient) -> None:
    first = await submit(api, client_key="k-1")
    again = await submit(api, client_key="k-1", title="something else")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["title"] == GOAL["title"]
    other = await submit(api, client_key="k-2")
    assert other.json()["id"] != first.json()["id"]


async def test_bad_goals_are_refused_naming_the_field(api: httpx.AsyncClient) -> None:
    cases: list[tuple[Json, str]] = [
        ({k: v for k, v in GOAL.items() if k != "success_criteria"}, "success_criteria"),
        (GOAL | {"success_criteria": []}, "success_criteria"),
        (GOAL | {"title": ""}, "title"),
        (GOAL | {"budget_usd": -1}, "budget_usd"),
        (GOAL | {"budget_tokens": "10"}, "budget_tokens"),
        (GOAL | {"autonomy": "yolo"}, "autonomy"),
        (GOAL | {"surprise": 1}, "surprise"),
    ]
    for body, field in cases:
        reply = await api.post("/api/goals", json=body)
        assert reply.status_code == 422, (body, reply.text)
        assert reply.json()["error"] == "invalid_field"
        assert field in (reply.json().get("field") or ""), (field, reply.json())
    assert (await api.get("/api/goals/goal-0000000000000000")).json()["error"] == "goal_not_found"
    assert (await api.get("/api/goals/nonsense")).status_code == 422


async def test_cancel_and_retry_follow_the_machine(api: httpx.AsyncClient) -> None:
    goal = (await submit(api)).json()
    refused = await api.post(f"/api/goals/{goal['id']}/retry")
    assert refused.status_code == 409
    assert refused.json()["error"] == "transition_refused"
    assert "failed" in refused.json()["detail"]  # names the states a retry needs

    cancelled = await api.post(f"/api/goals/{goal['id']}/cancel", params={"reason": "not now"})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled"
    assert cancelled.json()["reason"] == "not now"
    assert cancelled.json()["history"][-1]["actor"] == "test admin"
    again = await api.post(f"/api/goals/{goal['id']}/cancel")
    assert again.status_code == 409
    assert (await api.post("/api/goals/goal-0000000000000000/cancel")).status_code == 404


async def test_goals_are_listed_newest_first_filtered_and_paged(api: httpx.AsyncClient) -> None:
    ids = [(await submit(api, title=f"goal {n}")).json()["id"] for n in range(5)]
    await api.post(f"/api/goals/{ids[0]}/cancel")
    first = (await api.get("/api/goals", params={"limit": 2})).json()
    assert [g["id"] for g in first["goals"]] == ids[::-1][:2]
    rest = (await api.get("/api/goals", params={"cursor": first["next_cursor"]})).json()
    assert [g["id"] for g in rest["goals"]] == ids[::-1][2:]
    assert rest["next_cursor"] is None
    cancelled = (await api.get("/api/goals", params={"state": "cancelled"})).json()
    assert [g["id"] for g in cancelled["goals"]] == [ids[0]]
    assert (await api.get("/api/goals", params={"state": "bogus"})).status_code == 422


async def test_the_nats_rpc_does_what_the_routes_do(api: httpx.AsyncClient, nc: Client) -> None:
    del api  # the running hub answers on NATS
    body = SubmitGoal.model_validate(GOAL | {"client_key": "nats-1"})
    goal = await micro.call(nc, "hub", "submit_goal", body, GoalView)
    assert goal.source == "nats"
    assert goal.created_by == "nats"
    again = await micro.call(nc, "hub", "submit_goal", body, GoalView)
    assert again.id == goal.id
    shown = await micro.call(nc, "hub", "goal", GoalRef(goal_id=goal.id), GoalDetail)
    assert shown.history[0].to_state == "submitted"  # the driver may have begun planning it
    await micro.call(nc, "hub", "cancel_goal", GoalRef(goal_id=goal.id), GoalDetail)
    with pytest.raises(ConflictError) as refused:
        await micro.call(nc, "hub", "cancel_goal", GoalRef(goal_id=goal.id), GoalDetail)
    assert refused.value.code == "transition_refused"
    with pytest.raises(NotFoundError) as unknown:
        await micro.call(nc, "hub", "goal", GoalRef(goal_id="goal-0000000000000000"), GoalDetail)
    assert unknown.value.code == "goal_not_found"
