"""Every hand-out of a task counts against `AGENTCOM_QUEUE_MAX_DELIVERIES` (issue 14): the
scheduler's requeues (missed acceptance, hello reconcile, stranded sweep) count no retry,
so a task that crashes every sidecar before it journals the assignment used to bounce from
agent to agent forever. Driven through the queue's NATS RPC, as the scheduler calls it."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from nats.aio.client import Client

from agentcom_common import micro
from agentcom_common.contracts.task import (
    Claimed,
    ClaimTask,
    Reported,
    ReportTask,
    RequeueTask,
    TaskView,
)
from agentcom_common.errors import ConflictError
from agentcom_common.testing import running
from agentcom_queue.app import create_app
from agentcom_queue.settings import QueueSettings

CAP = 3
Json = dict[str, Any]


async def submit(api: httpx.AsyncClient, **fields: Any) -> Json:
    made = await api.post("/api/tasks", json={"description": "bounces"} | fields)
    assert made.status_code == 201, made.text
    return made.json()


async def claim(nc: Client) -> TaskView | None:
    return (await micro.call(nc, "queue", "claim", ClaimTask(agent_id="a1"), Claimed)).task


async def report(nc: Client, task: TaskView, outcome: Reported, error: str) -> TaskView:
    body = ReportTask(
        task_id=task.id, agent_id="a1", generation=task.generation, outcome=outcome, error=error
    )
    return await micro.call(nc, "queue", "report", body, TaskView, timeout=10)


async def requeue(nc: Client, task: TaskView, reason: str, **fields: Any) -> TaskView:
    back = RequeueTask(task_id=task.id, generation=task.generation, reason=reason, **fields)
    return await micro.call(nc, "queue", "requeue", back, TaskView, timeout=10)


@pytest.fixture
async def capped(
    queue_settings: QueueSettings, admin_token: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = queue_settings.model_copy(update={"queue_max_deliveries": CAP})
    async with running(create_app(settings), "http://queue") as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        yield client


async def hand_out_and_back(nc: Client, reason: str) -> TaskView:
    task = await claim(nc)
    assert task is not None
    return await requeue(nc, task, reason)


async def test_a_task_handed_back_again_and_again_is_dead_lettered_at_the_cap(
    capped: httpx.AsyncClient, nc: Client
) -> None:
    made = await submit(capped, max_retries=5)
    for _ in range(CAP - 1):
        assert (await hand_out_and_back(nc, "agent a1 did not accept in time")).state == "queued"

    last = await hand_out_and_back(nc, "agent a1 did not accept in time")

    assert last.state == "dead_letter", last
    assert last.retry_count == 0  # no failure report ever came: only deliveries ran out
    assert await claim(nc) is None  # not offered again
    history = (await capped.get(f"/api/tasks/{made['id']}/history")).json()
    assert [h["to_state"] for h in history][-2:] == ["failed", "dead_letter"]
    assert "handed to an agent 3 times" in history[-1]["reason"], history[-1]
    assert "did not accept in time" in history[-1]["reason"], history[-1]


async def test_failures_and_hand_backs_share_the_cap_and_a_retry_by_hand_starts_afresh(
    capped: httpx.AsyncClient, nc: Client
) -> None:
    made = await submit(capped, max_retries=5)
    await hand_out_and_back(nc, "sidecar lost it")
    failing = await claim(nc)
    assert failing is not None
    assert (await report(nc, failing, "failed", error="boom")).state == "queued"
    third = await claim(nc)
    assert third is not None

    ended = await report(nc, third, "failed", error="boom again")  # retries remain, deliveries not

    assert ended.state == "dead_letter", ended
    retried = await capped.post(f"/api/tasks/{made['id']}/retry")
    assert retried.json()["state"] == "queued"
    assert (await hand_out_and_back(nc, "sidecar lost it")).state == "queued"  # a fresh count


async def test_a_missed_acceptance_hand_back_loses_to_an_accepted_that_applied_first(
    capped: httpx.AsyncClient, nc: Client
) -> None:
    """The scheduler's sweep and the agent's `accepted` race: once the acceptance applied the
    agent has been told to start, so the hand-back (`unaccepted_only`) is refused and the task
    stays with that agent; while still only assigned, the same hand-back goes through."""
    made = await submit(capped)
    task = await claim(nc)
    assert task is not None
    await report(nc, task, "accepted", "")
    with pytest.raises(ConflictError) as refused:
        await requeue(nc, task, "agent a1 late", unaccepted_only=True)
    assert refused.value.code == "already_accepted"
    held = (await capped.get(f"/api/tasks/{made['id']}")).json()
    assert (held["state"], held["assigned_to"]) == ("working", "a1")

    other = await submit(capped)
    second = await claim(nc)
    assert second is not None
    assert second.id == other["id"]
    assert (await requeue(nc, second, "late", unaccepted_only=True)).state == "queued"
