"""The NATS RPCs the hub drives a goal's tasks with: `list` by goal, and `cancel`."""

import json
from typing import Any

import httpx
from nats.aio.client import Client

Json = dict[str, Any]


async def request(nc: Client, op: str, body: Json) -> tuple[str | None, Json]:
    reply = await nc.request(f"agentcom.rpc.queue.{op}", json.dumps(body).encode(), timeout=10)
    code = (reply.headers or {}).get("Nats-Service-Error-Code")
    return code, ({} if code else json.loads(reply.data))


async def test_a_goal_s_tasks_are_listed_and_cancelled_over_nats(
    api: httpx.AsyncClient, nc: Client
) -> None:
    mine = [
        (await api.post("/api/tasks", json={"description": f"t{n}", "goal_id": "goal-a"})).json()
        for n in range(3)
    ]
    await api.post("/api/tasks", json={"description": "other", "goal_id": "goal-b"})
    await api.post("/api/tasks", json={"description": "no goal"})

    code, page = await request(nc, "list", {"goal_id": "goal-a"})
    assert code is None
    assert sorted(t["id"] for t in page["tasks"]) == sorted(t["id"] for t in mine)

    code, cancelled = await request(nc, "cancel", {"task_id": mine[0]["id"]})
    assert code is None
    assert cancelled["state"] == "cancelled"
    code, again = await request(nc, "cancel", {"task_id": mine[0]["id"]})
    assert (code, again["state"]) == (None, "cancelled")  # a repeat is a no-op
    history = (await api.get(f"/api/tasks/{mine[0]['id']}/history")).json()
    assert history[-1]["actor"] == "nats"

    code, _ = await request(nc, "cancel", {"task_id": "task-0000000000000000"})
    assert code == "task_not_found"
    code, _ = await request(nc, "cancel", {"task_id": "nope"})
    assert code == "invalid_field"
