"""An agent token reads only its own work over HTTP (issue 15): the tasks assigned to its agent
and its own agent record; the rest of the fleet is a 404 (one task or agent) or a 403 (lists
and totals of everything). A viewer token still reads everything. Tokens are the real ones the
scheduler's `POST /api/agents` issues; tasks are assigned through the queue's claim RPC, the
path the scheduler takes."""

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from nats.aio.client import Client

from agentcom_common import micro
from agentcom_common.contracts.task import Claimed, ClaimTask
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import running
from agentcom_llm_registry.app import create_app as llm_app
from agentcom_queue.app import create_app as queue_app
from agentcom_scheduler.app import create_app as scheduler_app


@dataclass(frozen=True, slots=True)
class Fleet:
    queue: httpx.AsyncClient
    scheduler: httpx.AsyncClient
    llm: httpx.AsyncClient
    tokens: dict[str, str]  # agent id -> its bearer token
    tasks: dict[str, str]  # agent id -> the task assigned to it
    viewer: str


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def fleet(settings: CommonSettings, admin_token: str, nc: Client) -> AsyncIterator[Fleet]:
    async with (
        running(queue_app(settings), "http://queue") as queue,
        running(scheduler_app(settings), "http://scheduler") as scheduler,
        running(llm_app(settings), "http://llm-registry") as llm,
    ):
        for client in (queue, scheduler, llm):
            client.headers.update(bearer(admin_token))
        tokens: dict[str, str] = {}
        tasks: dict[str, str] = {}
        for agent in ("one", "two"):
            made = await scheduler.post("/api/agents", json={"name": agent})
            assert made.status_code == 201, made.text
            tokens[agent] = made.json()["token"]
            # these tests read more often than an agent's default 3 light calls a minute
            await scheduler.put(f"/api/agents/{agent}/rate-limits", json={"light": 1000})
            submitted = await queue.post("/api/tasks", json={"description": f"for {agent}"})
            assert submitted.status_code == 201, submitted.text
            claim = ClaimTask(agent_id=agent)
            claimed = (await micro.call(nc, "queue", "claim", claim, Claimed)).task
            assert claimed is not None
            tasks[agent] = claimed.id
        await queue.post("/api/tasks", json={"description": "nobody's yet"})
        viewer = await scheduler.post("/api/tokens", json={"role": "viewer", "name": "v"})
        yield Fleet(queue, scheduler, llm, tokens, tasks, viewer.json()["token"])


async def test_an_agent_token_lists_and_reads_only_its_own_tasks(fleet: Fleet) -> None:
    as_one = bearer(fleet.tokens["one"])

    listed = await fleet.queue.get("/api/tasks", headers=as_one)
    own = await fleet.queue.get(f"/api/tasks/{fleet.tasks['one']}", headers=as_one)
    own_history = await fleet.queue.get(f"/api/tasks/{fleet.tasks['one']}/history", headers=as_one)
    other = await fleet.queue.get(f"/api/tasks/{fleet.tasks['two']}", headers=as_one)
    other_history = await fleet.queue.get(
        f"/api/tasks/{fleet.tasks['two']}/history", headers=as_one
    )
    asked_for_two = await fleet.queue.get("/api/tasks?assigned_to=two", headers=as_one)

    assert listed.status_code == 200, listed.text
    assert [t["id"] for t in listed.json()["tasks"]] == [fleet.tasks["one"]]
    assert own.status_code == 200
    assert own_history.status_code == 200
    for refused in (other, other_history):
        assert refused.status_code == 404
        assert refused.json()["error"] == "task_not_found"
        assert "reads only its own tasks" in refused.json()["detail"]
    assert asked_for_two.status_code == 403
    assert asked_for_two.json()["field"] == "assigned_to"


async def test_an_agent_token_reads_only_its_own_agent_record(fleet: Fleet) -> None:
    as_one = bearer(fleet.tokens["one"])

    listed = await fleet.scheduler.get("/api/agents", headers=as_one)
    own = await fleet.scheduler.get("/api/agents/one", headers=as_one)
    others = [
        await fleet.scheduler.get(f"/api/agents/two{tail}", headers=as_one)
        for tail in ("", "/history", "/rate-limits")
    ]

    assert [a["id"] for a in listed.json()] == ["one"]
    assert own.status_code == 200
    for refused in others:
        assert refused.status_code == 404, refused.text
        assert refused.json()["error"] == "agent_not_found"
    assert (await fleet.scheduler.get("/api/agents/one/history", headers=as_one)).status_code == 200


async def test_an_agent_token_cannot_read_fleet_wide_totals_or_endpoints(fleet: Fleet) -> None:
    as_one = bearer(fleet.tokens["one"])

    for client, path in (
        (fleet.queue, "/api/tasks/stats"),
        (fleet.queue, "/api/tasks/dead-letter"),
        (fleet.queue, "/api/repos"),
        (fleet.scheduler, "/api/scheduler/stats"),
        (fleet.llm, "/api/llm/endpoints"),
        (fleet.llm, "/api/llm/metrics"),
        (fleet.llm, "/api/llm/costs"),
    ):
        refused = await client.get(path, headers=as_one)
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json()["error"] == "forbidden"
        assert "the token has role agent" in refused.json()["detail"]


async def test_an_agent_role_token_of_no_agent_reads_nothing(fleet: Fleet) -> None:
    made = await fleet.scheduler.post("/api/tokens", json={"role": "agent", "name": "loose"})

    refused = await fleet.queue.get("/api/tasks", headers=bearer(made.json()["token"]))

    assert refused.status_code == 403
    assert refused.json()["error"] == "not_an_agent"


async def test_a_viewer_token_still_reads_every_task_and_agent(fleet: Fleet) -> None:
    as_viewer = bearer(fleet.viewer)

    tasks = (await fleet.queue.get("/api/tasks", headers=as_viewer)).json()["tasks"]
    agents = (await fleet.scheduler.get("/api/agents", headers=as_viewer)).json()
    other = await fleet.queue.get(f"/api/tasks/{fleet.tasks['two']}", headers=as_viewer)

    assert len(tasks) == 3
    assert {a["id"] for a in agents} == {"one", "two"}
    assert other.status_code == 200
    assert (await fleet.queue.get("/api/tasks/stats", headers=as_viewer)).status_code == 200


async def test_an_agent_token_writes_nothing_even_on_its_own_task(fleet: Fleet) -> None:
    as_one = bearer(fleet.tokens["one"])
    own = fleet.tasks["one"]

    for client, path, body in (
        (fleet.queue, "/api/tasks", {"description": "mine"}),
        (fleet.queue, f"/api/tasks/{own}/cancel", None),
        (fleet.queue, f"/api/tasks/{own}/retry", None),
        (fleet.queue, "/api/repos", {"url": "https://git.example/app"}),
        (fleet.scheduler, "/api/agents/one/restart", None),
        (fleet.llm, "/api/llm/endpoints/e1/share", None),
    ):
        refused = await client.post(path, json=body, headers=as_one)
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json()["error"] == "forbidden"
