"""The queue's refusals through `micro.call`: each arrives as the class its op raised."""

import httpx
import pytest
from nats.aio.client import Client

from agentcom_common import micro
from agentcom_common.contracts.task import (
    Claimed,
    ClaimTask,
    QueueStats,
    ReportTask,
    RequeueTask,
    StatsRequest,
    SubmitTask,
    TaskView,
)
from agentcom_common.errors import (
    ConflictError,
    InvalidError,
    NotFoundError,
    StaleGenerationError,
    UnavailableError,
)


async def test_replies_decode_into_their_models(api: httpx.AsyncClient, nc: Client) -> None:
    made = await micro.call(nc, "queue", "submit", SubmitTask(description="typed"), TaskView)
    stats = await micro.call(nc, "queue", "stats", StatsRequest(), QueueStats)

    assert made.description == "typed"
    assert stats.by_state["queued"] == 1


async def test_queue_refusals_come_back_as_their_classes(
    api: httpx.AsyncClient, nc: Client
) -> None:
    await micro.call(nc, "queue", "submit", SubmitTask(description="x"), TaskView)
    task = (await micro.call(nc, "queue", "claim", ClaimTask(agent_id="a1"), Claimed)).task
    assert task is not None
    accept = ReportTask(
        task_id=task.id, agent_id="a1", generation=task.generation, outcome="accepted"
    )
    await micro.call(nc, "queue", "report", accept, TaskView)

    missing = RequeueTask(task_id="task-0000000000000000", generation=1, reason="r")
    old = accept.model_copy(update={"generation": task.generation + 1, "outcome": "completed"})
    late = RequeueTask(
        task_id=task.id, generation=task.generation, reason="r", unaccepted_only=True
    )

    with pytest.raises(NotFoundError) as not_found:
        await micro.call(nc, "queue", "requeue", missing, TaskView)
    with pytest.raises(StaleGenerationError) as stale:
        await micro.call(nc, "queue", "report", old, TaskView)
    with pytest.raises(ConflictError) as taken:
        await micro.call(nc, "queue", "requeue", late, TaskView)
    with pytest.raises(InvalidError) as invalid:  # a claim's contract refuses a submit's fields
        await micro.call(nc, "queue", "claim", SubmitTask(description="x"), Claimed)

    assert not_found.value.code == "task_not_found"
    assert stale.value.code == "stale_generation"
    assert (type(taken.value), taken.value.code) == (ConflictError, "already_accepted")
    assert invalid.value.field is not None
    assert invalid.value.detail.startswith(f"{invalid.value.field}: ")


async def test_a_stopped_queue_is_unavailable(nc: Client) -> None:
    with pytest.raises(UnavailableError) as caught:
        await micro.call(nc, "queue", "stats", StatsRequest(), QueueStats, timeout=1)

    assert caught.value.code == "queue_unavailable"
