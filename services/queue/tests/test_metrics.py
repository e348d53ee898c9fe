"""The queue's instruments, read back from its `/metrics` as Prometheus would scrape them."""

from typing import Any

import httpx
import pytest
from nats.aio.client import Client

from agentcom_common import micro
from agentcom_common.contracts.task import Claimed, ClaimTask, Reported, ReportTask, TaskView
from agentcom_common.testing import eventually, metric

pytestmark = pytest.mark.usefixtures("meters")


async def submit(api: httpx.AsyncClient, **fields: Any) -> None:
    response = await api.post("/api/tasks", json={"description": "do the thing"} | fields)
    assert response.status_code == 201, response.text


async def claim(nc: Client) -> TaskView | None:
    body = ClaimTask(agent_id="a1")
    return (await micro.call(nc, "queue", "claim", body, Claimed, timeout=10)).task


async def report(nc: Client, task: TaskView, outcome: Reported, **fields: Any) -> None:
    body = ReportTask(
        task_id=task.id, agent_id="a1", generation=task.generation, outcome=outcome, **fields
    )
    await micro.call(nc, "queue", "report", body, TaskView, timeout=10)


async def test_a_task_through_the_queue_is_counted_by_lane_and_state(
    api: httpx.AsyncClient, nc: Client
) -> None:
    before = (await api.get("/metrics")).text
    await submit(api, priority="high")
    await submit(api, priority="low")
    claimed = await claim(nc)
    assert claimed is not None
    await report(nc, claimed, "accepted")
    await report(nc, claimed, "completed", result={"summary": "ok"})

    def grew(text: str, name: str, **labels: str) -> float:
        return metric(text, name, **labels) - metric(before, name, **labels)

    async def scraped() -> str:
        text = (await api.get("/metrics")).text
        # sampled from Postgres every metrics_sample_interval: the low task still waits
        assert metric(text, "agentcom_queue_tasks", state="queued", lane="low") == 1
        assert metric(text, "agentcom_queue_tasks", state="queued", lane="high") == 0
        return text

    text = await eventually(scraped, timeout=10)
    assert grew(text, "agentcom_tasks_submitted_total", lane="high") == 1
    assert grew(text, "agentcom_tasks_submitted_total", lane="low") == 1
    assert grew(text, "agentcom_tasks_assigned_total", lane="high") == 1
    assert grew(text, "agentcom_tasks_finished_total", state="completed", lane="high") == 1
    assert grew(text, "agentcom_task_wait_duration_seconds_count", lane="high") == 1
    assert grew(text, "agentcom_task_run_duration_seconds_count", outcome="completed") == 1
    assert "# TYPE agentcom_task_run_duration_seconds histogram" in text
    # the one claim found a task; its statement is timed (whatever else claimed meanwhile)
    assert grew(text, "agentcom_queue_claim_duration_seconds_count", found="true") >= 1
    assert grew(text, "agentcom_queue_claim_duration_seconds_bucket", le="2.5", found="true") >= 1
    posted = grew(
        text,
        "http_server_request_duration_seconds_count",
        http_route="/api/tasks",
        http_request_method="POST",
        http_response_status_code="201",
    )

    assert posted == 2
    assert metric(text, "agentcom_outbox_backlog", agentcom_outbox="queue") >= 0
    assert "agentcom_outbox_backlog{" in text
