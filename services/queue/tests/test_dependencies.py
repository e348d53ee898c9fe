"""The task DAG through the queue's real interfaces: dependents are released, blocked with a
reason, unblocked, and repaired by the sweep, whichever path the dependency's outcome took."""

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from nats.aio.client import Client
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import micro
from agentcom_common.contracts.task import (
    ClaimedTasks,
    ClaimTasks,
    Reported,
    ReportedTasks,
    ReportTask,
    ReportTasks,
    SubmitTask,
    TaskView,
)
from agentcom_common.testing import eventually, running
from agentcom_queue.app import create_app
from agentcom_queue.settings import QueueSettings

Json = dict[str, Any]
PAIRS = 30


@pytest.fixture
async def swept(
    queue_settings: QueueSettings, admin_token: str
) -> AsyncIterator[httpx.AsyncClient]:
    """The queue with its dependency sweep every 20 ms."""
    fast = queue_settings.model_copy(update={"queue_dependency_sweep": timedelta(milliseconds=20)})
    async with running(create_app(fast), "http://queue") as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        yield client


async def report(nc: Client, body: ReportTask) -> TaskView:
    return await micro.call(nc, "queue", "report", body, TaskView, timeout=10)


async def report_batch(nc: Client, reports: list[ReportTask]) -> ReportedTasks:
    body = ReportTasks(reports=reports)
    return await micro.call(nc, "queue", "report_batch", body, ReportedTasks, timeout=10)


async def submit(api: httpx.AsyncClient, **fields: Any) -> Json:
    response = await api.post("/api/tasks", json={"description": "do the thing"} | fields)
    assert response.status_code == 201, response.text
    return response.json()


async def task(api: httpx.AsyncClient, task_id: str) -> Json:
    return (await api.get(f"/api/tasks/{task_id}")).json()


def report_of(claimed: TaskView, outcome: Reported, **fields: Any) -> ReportTask:
    return ReportTask(
        task_id=claimed.id, agent_id="a1", generation=claimed.generation, outcome=outcome, **fields
    )


async def claim_all(nc: Client, count: int) -> dict[str, TaskView]:
    """Claim `count` tasks for agent a1 and report them accepted; by task id."""
    ask = ClaimTasks(agent_id="a1", limit=count)
    claimed = (await micro.call(nc, "queue", "claim_batch", ask, ClaimedTasks)).tasks
    assert len(claimed) == count
    accepted = await report_batch(nc, [report_of(t, "accepted") for t in claimed])
    assert all(r.ok for r in accepted.results), accepted
    return {t.id: t for t in claimed}


async def run_to(nc: Client, parent: Json, outcome: Reported, **fields: Any) -> TaskView:
    """Claim `parent` (the only claimable task) and report `outcome` for it."""
    claimed = (await claim_all(nc, 1))[parent["id"]]
    return await report(nc, report_of(claimed, outcome, **fields))


@pytest.mark.parametrize("op", ["report", "report_batch"])
async def test_concurrent_completions_of_two_dependencies_release_the_child(
    api: httpx.AsyncClient, nc: Client, op: str
) -> None:
    parents = await asyncio.gather(*(submit(api) for _ in range(2 * PAIRS)))
    pairs = list(zip(parents[::2], parents[1::2], strict=True))
    children = await asyncio.gather(*(submit(api, depends_on=[a["id"], b["id"]]) for a, b in pairs))
    claimed = await claim_all(nc, 2 * PAIRS)

    async def complete(parent: Json) -> None:
        body = report_of(claimed[parent["id"]], "completed")
        if op == "report_batch":
            reply = await report_batch(nc, [body])
            assert reply.results[0].ok, reply
        else:
            assert (await report(nc, body)).state == "completed"

    # each pair's two completions race in their own transactions
    await asyncio.gather(*(complete(parent) for pair in pairs for parent in pair))

    # the replies came after the commits: no sweep or later event is needed
    states = [(await task(api, child["id"]))["state"] for child in children]
    assert states == ["queued"] * PAIRS


@pytest.mark.parametrize("op", ["report", "report_batch"])
async def test_a_partial_pass_dependency_blocks_its_dependents_with_a_reason(
    api: httpx.AsyncClient, nc: Client, op: str
) -> None:
    parent = await submit(api)
    child = await submit(api, depends_on=[parent["id"]])
    claimed = (await claim_all(nc, 1))[parent["id"]]

    body = report_of(claimed, "partial_pass")
    if op == "report_batch":
        assert (await report_batch(nc, [body])).results[0].ok
    else:
        assert (await report(nc, body)).state == "partial_pass"

    shown = await task(api, child["id"])
    assert shown["state"] == "waiting"
    assert shown["blocked_reason"] == (
        f"dependency {parent['id']} ended partial_pass (accept or retry it to unblock)"
    )
    # a task submitted after the partial pass is blocked from the start, with the same reason
    late = await submit(api, depends_on=[parent["id"]])
    assert late["blocked_reason"] == shown["blocked_reason"]


async def test_accepting_a_partial_result_releases_the_dependents(
    api: httpx.AsyncClient, nc: Client
) -> None:
    parent = await submit(api)
    child = await submit(api, depends_on=[parent["id"]])
    await run_to(nc, parent, "partial_pass", result={"summary": "most of it"})

    accepted = await api.post(f"/api/tasks/{parent['id']}/accept")

    assert accepted.status_code == 200, accepted.text
    assert (accepted.json()["state"], accepted.json()["result"]) == (
        "completed",
        {"summary": "most of it"},
    )
    shown = await task(api, child["id"])
    assert (shown["state"], shown["blocked_reason"]) == ("queued", None)
    history = (await api.get(f"/api/tasks/{parent['id']}/history")).json()
    assert (history[-1]["from_state"], history[-1]["to_state"]) == ("partial_pass", "completed")
    assert history[-1]["reason"] == "partial result accepted"
    # again: nothing changes; the child is not released twice
    assert (await api.post(f"/api/tasks/{parent['id']}/accept")).status_code == 200
    child_history = (await api.get(f"/api/tasks/{child['id']}/history")).json()
    assert [h["to_state"] for h in child_history] == ["waiting", "queued"]
    assert child_history[-1]["reason"] == f"dependency {parent['id']} completed"


async def test_accept_refuses_what_is_not_a_partial_pass(
    api: httpx.AsyncClient, nc: Client
) -> None:
    queued = await submit(api)

    refused = await api.post(f"/api/tasks/{queued['id']}/accept")
    missing = await api.post("/api/tasks/task-0123456789abcdef/accept")

    assert refused.status_code == 409
    assert refused.json()["error"] == "invalid_transition"
    assert "queued" in refused.json()["detail"]
    assert missing.status_code == 404
    assert missing.json()["error"] == "task_not_found"
    assert (await task(api, queued["id"]))["state"] == "queued"


async def test_retrying_a_partial_pass_dependency_unblocks_and_later_releases_dependents(
    api: httpx.AsyncClient, nc: Client
) -> None:
    parent = await submit(api)
    child = await submit(api, depends_on=[parent["id"]])
    await run_to(nc, parent, "partial_pass")

    retried = await api.post(f"/api/tasks/{parent['id']}/retry")

    assert retried.status_code == 200, retried.text
    assert retried.json()["state"] == "queued"
    shown = await task(api, child["id"])
    assert (shown["state"], shown["blocked_reason"]) == ("waiting", None)
    assert (await run_to(nc, parent, "completed")).state == "completed"
    assert (await task(api, child["id"]))["state"] == "queued"


async def test_retrying_one_dead_letter_keeps_the_block_another_dependency_causes(
    api: httpx.AsyncClient, nc: Client
) -> None:
    first = await submit(api, max_retries=0)
    second = await submit(api, max_retries=0)
    child = await submit(api, depends_on=[first["id"], second["id"]])
    for parent in (first, second):
        assert (await run_to(nc, parent, "failed", error="no")).state == "dead_letter"
    reason = (await task(api, child["id"]))["blocked_reason"]
    named, other = (first, second) if first["id"] in reason else (second, first)
    assert named["id"] in reason
    assert "dead-lettered" in reason

    assert (await api.post(f"/api/tasks/{named['id']}/retry")).status_code == 200

    shown = await task(api, child["id"])
    assert shown["state"] == "waiting"
    assert shown["blocked_reason"] == (
        f"dependency {other['id']} was dead-lettered (retry it to unblock)"
    )
    assert (await api.post(f"/api/tasks/{other['id']}/retry")).status_code == 200
    assert (await task(api, child["id"]))["blocked_reason"] is None


async def test_the_sweep_releases_and_blocks_what_events_left_waiting(
    swept: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    done, dead = await submit(swept), await submit(swept)
    stranded = await submit(swept, depends_on=[done["id"]])
    unexplained = await submit(swept, depends_on=[done["id"], dead["id"]])
    # what the completion race left in databases before the fix: the dependencies ended, and
    # no transaction settled their dependents
    async with engine.begin() as conn:
        for parent, state in ((done, "completed"), (dead, "dead_letter")):
            await conn.execute(
                text("UPDATE queue.tasks SET state = :state WHERE id = :id"),
                {"state": state, "id": parent["id"]},
            )

    async def settled() -> None:
        assert (await task(swept, stranded["id"]))["state"] == "queued"
        shown = await task(swept, unexplained["id"])
        assert shown["state"] == "waiting"
        assert shown["blocked_reason"] == (
            f"dependency {dead['id']} was dead-lettered (retry it to unblock)"
        )

    await eventually(settled)
    history = (await swept.get(f"/api/tasks/{stranded['id']}/history")).json()
    assert [(h["to_state"], h["reason"]) for h in history] == [
        ("waiting", "submitted"),
        ("queued", "every dependency completed (sweep)"),
    ]


async def test_a_task_submitted_while_its_dependency_completes_is_released(
    api: httpx.AsyncClient, nc: Client
) -> None:
    parents = await asyncio.gather(*(submit(api) for _ in range(PAIRS)))
    claimed = await claim_all(nc, PAIRS)

    async def complete(parent: Json) -> None:
        reply = await report(nc, report_of(claimed[parent["id"]], "completed"))
        assert reply.state == "completed"

    # each child's submit races its dependency's completion
    _, children = await asyncio.gather(
        asyncio.gather(*(complete(parent) for parent in parents)),
        asyncio.gather(
            *(
                micro.call(
                    nc,
                    "queue",
                    "submit",
                    SubmitTask(description="x", depends_on=[p["id"]]),
                    TaskView,
                )
                for p in parents
            )
        ),
    )

    states = [(await task(api, child.id))["state"] for child in children]
    assert states == ["queued"] * PAIRS
