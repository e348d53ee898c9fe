"""The queue's behaviour through its real interfaces: HTTP for people, NATS RPC for agents."""

import asyncio
import json
from typing import Any

import httpx
import pytest
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import auth, micro
from agentcom_common.contracts.task import (
    Claimed,
    ClaimTask,
    QueueStats,
    Reported,
    ReportTask,
    RequeueTask,
    StatsRequest,
    SubmitTask,
    TaskView,
)
from agentcom_common.errors import ConflictError, ForbiddenError, StaleGenerationError

Json = dict[str, Any]


async def submit(api: httpx.AsyncClient, **fields: Any) -> Json:
    body = {"description": "do the thing"} | fields
    response = await api.post("/api/tasks", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def claim(nc: Client, agent: str = "a1", **fields: Any) -> TaskView | None:
    body = ClaimTask(agent_id=agent, **fields)
    return (await micro.call(nc, "queue", "claim", body, Claimed, timeout=10)).task


async def report(
    nc: Client, task: TaskView, outcome: Reported, agent: str = "a1", **fields: Any
) -> TaskView:
    body = ReportTask(
        task_id=task.id, agent_id=agent, generation=task.generation, outcome=outcome, **fields
    )
    return await micro.call(nc, "queue", "report", body, TaskView, timeout=10)


async def test_claims_follow_lanes_then_age(api: httpx.AsyncClient, nc: Client) -> None:
    low = await submit(api, priority="low")
    normal_1 = await submit(api)
    urgent = await submit(api, priority="urgent")
    normal_2 = await submit(api)
    high = await submit(api, priority="high")

    order = [task.id for _ in range(5) if (task := await claim(nc)) is not None]

    assert order == [urgent["id"], high["id"], normal_1["id"], normal_2["id"], low["id"]]
    assert await claim(nc) is None


async def test_full_cycle_bumps_generation_and_keeps_history(
    api: httpx.AsyncClient, nc: Client
) -> None:
    task = await submit(api)
    claimed = await claim(nc)
    assert claimed is not None
    assert claimed.generation == 1

    await report(nc, claimed, "accepted")
    done = await report(nc, claimed, "completed", result={"summary": "ok"})

    assert done.state == "completed"
    history = (await api.get(f"/api/tasks/{task['id']}/history")).json()
    assert [h["to_state"] for h in history] == ["queued", "assigned", "working", "completed"]
    assert {h["generation"] for h in history[1:]} == {1}


async def test_failures_retry_then_dead_letter_with_last_error(
    api: httpx.AsyncClient, nc: Client
) -> None:
    task = await submit(api, max_retries=2)
    after: TaskView | None = None
    for attempt in range(3):
        claimed = await claim(nc)
        assert claimed is not None
        assert claimed.id == task["id"]
        await report(nc, claimed, "accepted")
        after = await report(nc, claimed, "failed", error=f"boom {attempt}")

    assert after is not None
    assert after.state == "dead_letter"
    assert after.last_error == "boom 2"
    dead = (await api.get("/api/tasks/dead-letter")).json()["tasks"]
    assert [t["id"] for t in dead] == [task["id"]]

    retried = (await api.post(f"/api/tasks/{task['id']}/retry")).json()
    assert (retried["state"], retried["retry_count"]) == ("queued", 0)


async def test_a_hand_back_counting_a_retry_retries_then_dead_letters(
    api: httpx.AsyncClient, nc: Client
) -> None:
    task = await submit(api, max_retries=1)
    states: list[str] = []
    after: TaskView | None = None
    for _ in range(2):
        claimed = await claim(nc)
        assert claimed is not None
        assert claimed.id == task["id"]
        back = RequeueTask(
            task_id=claimed.id, generation=claimed.generation, reason="agent gone", count_retry=True
        )
        after = await micro.call(nc, "queue", "requeue", back, TaskView)
        again = await micro.call(nc, "queue", "requeue", back, TaskView)  # applied once
        assert again.retry_count == after.retry_count
        states.append(after.state)

    assert states == ["queued", "dead_letter"]
    assert after is not None
    assert after.last_error == "handed back as failed: agent gone"
    history = (await api.get(f"/api/tasks/{task['id']}/history")).json()
    assert [h["to_state"] for h in history].count("failed") == 2


async def test_stale_report_is_refused_and_changes_nothing(
    api: httpx.AsyncClient, nc: Client
) -> None:
    await submit(api)
    first = await claim(nc)
    assert first is not None
    back = RequeueTask(task_id=first.id, generation=1, reason="agent offline")
    await micro.call(nc, "queue", "requeue", back, TaskView)
    second = await claim(nc, "a2")
    assert second is not None
    assert second.generation == 2

    with pytest.raises(StaleGenerationError):
        await report(nc, first, "completed")

    assert (await api.get(f"/api/tasks/{first.id}")).json()["state"] == "assigned"


async def test_duplicate_report_is_acknowledged_once(api: httpx.AsyncClient, nc: Client) -> None:
    await submit(api)
    claimed = await claim(nc)
    assert claimed is not None
    await report(nc, claimed, "accepted")

    first = await report(nc, claimed, "completed")
    again = await report(nc, claimed, "completed")

    assert first == again
    history = (await api.get(f"/api/tasks/{claimed.id}/history")).json()
    assert [h["to_state"] for h in history].count("completed") == 1


async def test_report_from_another_agent_is_refused(api: httpx.AsyncClient, nc: Client) -> None:
    await submit(api)
    claimed = await claim(nc, "a1")
    assert claimed is not None

    with pytest.raises(ForbiddenError) as forged:
        await report(nc, claimed, "accepted", agent="mallory")

    assert forged.value.code == "wrong_agent"


@pytest.mark.parametrize("state", ["waiting", "queued", "assigned", "working"])
async def test_cancel_from_every_unfinished_state(
    api: httpx.AsyncClient, nc: Client, state: str
) -> None:
    blocker = await submit(api)
    task = await submit(api, depends_on=[blocker["id"]]) if state == "waiting" else blocker
    if state in ("assigned", "working"):
        claimed = await claim(nc)
        assert claimed is not None
        if state == "working":
            await report(nc, claimed, "accepted")
    assert (await api.get(f"/api/tasks/{task['id']}")).json()["state"] == state

    cancelled = await api.post(f"/api/tasks/{task['id']}/cancel")

    assert cancelled.json()["state"] == "cancelled"
    assert (await api.post(f"/api/tasks/{task['id']}/cancel")).status_code == 200


async def test_cancelling_an_ended_task_says_why(api: httpx.AsyncClient, nc: Client) -> None:
    task = await submit(api)
    await api.post(f"/api/tasks/{task['id']}/cancel")
    claimed_none = await claim(nc)
    assert claimed_none is None
    retry = await api.post(f"/api/tasks/{task['id']}/retry")

    assert retry.status_code == 409
    assert retry.json()["error"] == "invalid_transition"


async def test_dependents_wait_then_release_on_completion(
    api: httpx.AsyncClient, nc: Client
) -> None:
    first = await submit(api)
    second = await submit(api)
    child = await submit(api, depends_on=[first["id"], second["id"]], priority="urgent")
    assert child["state"] == "waiting"

    for _ in range(2):
        claimed = await claim(nc)
        assert claimed is not None
        assert claimed.id != child["id"]
        await report(nc, claimed, "accepted")
        await report(nc, claimed, "completed")

    assert (await api.get(f"/api/tasks/{child['id']}")).json()["state"] == "queued"
    released = await claim(nc)
    assert released is not None
    assert released.id == child["id"]


async def test_unknown_dependencies_are_named(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/api/tasks", json={"description": "x", "depends_on": ["task-0000000000000000"]}
    )

    assert response.status_code == 409
    assert response.json()["error"] == "unknown_dependencies"
    assert response.json()["field"] == "depends_on"
    assert "task-0000000000000000" in response.json()["detail"]


async def test_failed_dependency_blocks_dependents_visibly(
    api: httpx.AsyncClient, nc: Client
) -> None:
    parent = await submit(api, max_retries=0)
    child = await submit(api, depends_on=[parent["id"]])
    claimed = await claim(nc)
    assert claimed is not None
    await report(nc, claimed, "accepted")
    await report(nc, claimed, "failed", error="no")

    blocked = (await api.get(f"/api/tasks/{child['id']}")).json()
    assert blocked["state"] == "waiting"
    assert parent["id"] in blocked["blocked_reason"]

    await api.post(f"/api/tasks/{parent['id']}/retry")
    assert (await api.get(f"/api/tasks/{child['id']}")).json()["blocked_reason"] is None


async def test_tasks_inherit_the_top_active_repo_and_paused_repos_are_skipped(
    api: httpx.AsyncClient, nc: Client
) -> None:
    await api.post("/api/repos", json={"url": "https://git.example/a.git"})
    await api.post("/api/repos", json={"url": "https://git.example/b/"})
    inherited = await submit(api)
    assert inherited["repo"] == "https://git.example/a"
    assert inherited["repo_url"] == "https://git.example/a.git"  # what a sidecar clones
    listed = (await api.get("/api/repos")).json()
    assert [(r["url"], r["clone_url"]) for r in listed] == [
        ("https://git.example/a", "https://git.example/a.git"),
        ("https://git.example/b", "https://git.example/b"),
    ]

    await api.post("/api/repos/pause", json={"url": "https://git.example/a", "paused": True})
    on_b = await submit(api)
    assert on_b["repo"] == "https://git.example/b"

    claimed = await claim(nc)
    assert claimed is not None
    assert claimed.id == on_b["id"]
    assert await claim(nc) is None  # the task on paused repo a waits

    await api.post("/api/repos/pause", json={"url": "https://git.example/a", "paused": False})
    resumed = await claim(nc)
    assert resumed is not None
    assert resumed.id == inherited["id"]


async def test_same_client_key_returns_the_same_task(api: httpx.AsyncClient) -> None:
    results = await asyncio.gather(
        *(
            api.post("/api/tasks", json={"description": "once", "client_key": "k-1"})
            for _ in range(5)
        )
    )

    assert {r.json()["id"] for r in results} == {results[0].json()["id"]}
    listed = (await api.get("/api/tasks")).json()["tasks"]
    assert len(listed) == 1


async def test_ten_concurrent_claimers_never_share_a_task(
    api: httpx.AsyncClient, nc: Client
) -> None:
    for _ in range(30):
        await submit(api)

    async def drain(agent: str) -> list[str]:
        got: list[str] = []
        while (task := await claim(nc, agent)) is not None:
            got.append(task.id)
        return got

    claimed = [
        t for batch in await asyncio.gather(*(drain(f"a{i}") for i in range(10))) for t in batch
    ]

    assert len(claimed) == 30
    assert len(set(claimed)) == 30


async def test_capabilities_restrict_claims(api: httpx.AsyncClient, nc: Client) -> None:
    gpu = await submit(api, needed_capabilities=["gpu"])

    assert await claim(nc, capabilities=["python"]) is None
    got = await claim(nc, capabilities=["python", "gpu"])
    assert got is not None
    assert got.id == gpu["id"]


async def test_misspelt_field_is_named_on_http_and_nats(api: httpx.AsyncClient, nc: Client) -> None:
    http = await api.post("/api/tasks", json={"description": "x", "priorty": "high"})
    # raw: micro.call would not build a request its contract refuses
    body = json.dumps({"description": "x", "priorty": "high"}).encode()
    nats_reply = await nc.request("agentcom.rpc.queue.submit", body, timeout=10)

    assert http.status_code == 422
    assert http.json()["field"] == "priorty"
    assert nats_reply.headers is not None
    assert nats_reply.headers[micro.ERROR_CODE] == "invalid_field"
    assert nats_reply.headers[micro.ERROR_FIELD] == "priorty"
    assert nats_reply.headers[micro.ERROR_DETAIL].startswith("priorty")


async def test_pages_walk_every_task_once(api: httpx.AsyncClient) -> None:
    made = {(await submit(api))["id"] for _ in range(7)}
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = (await api.get("/api/tasks", params=params)).json()
        seen += [t["id"] for t in page["tasks"]]
        if (cursor := page["next_cursor"]) is None:
            break

    assert sorted(seen) == sorted(made)


async def test_every_transition_emits_its_event(api: httpx.AsyncClient, nc: Client) -> None:
    sub = await nc.subscribe("agentcom.evt.task.>")  # pyright: ignore[reportUnknownMemberType]  # nats-py: untyped callback parameter
    await submit(api)
    claimed = await claim(nc)
    assert claimed is not None
    await report(nc, claimed, "accepted")
    await report(nc, claimed, "completed")

    names = [(await sub.next_msg(timeout=10)).subject.rsplit(".", 1)[1] for _ in range(4)]
    assert names == ["submitted", "assigned", "accepted", "completed"]


@pytest.mark.parametrize("bad", ["nul \x00 inside", "lone \udcf4 surrogate"])
async def test_text_postgres_cannot_store_is_refused_by_field(
    api: httpx.AsyncClient, bad: str
) -> None:
    response = await api.post(
        "/api/tasks",
        content=json.dumps({"description": bad}).encode(),
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 422
    assert response.json()["field"] == "description"


async def test_a_dependency_listed_twice_is_refused(api: httpx.AsyncClient) -> None:
    parent = await submit(api)

    response = await api.post(
        "/api/tasks", json={"description": "x", "depends_on": [parent["id"], parent["id"]]}
    )

    assert response.status_code == 422
    assert response.json()["field"] == "depends_on"


async def test_the_callers_trace_continues_into_the_task_event(
    api: httpx.AsyncClient, nc: Client
) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    sub = await nc.subscribe("agentcom.evt.task.submitted")  # pyright: ignore[reportUnknownMemberType]  # nats-py: untyped callback parameter

    await api.post(
        "/api/tasks",
        json={"description": "traced"},
        headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
    )

    event = await sub.next_msg(timeout=10)
    assert event.headers is not None
    assert event.headers["traceparent"].split("-")[1] == trace_id


async def test_concurrent_submits_each_keep_their_own_callers_trace(
    api: httpx.AsyncClient, nc: Client
) -> None:
    # submits that arrive together share one group commit; each event still continues the
    # trace of the request that made it, not the first caller's
    sub = await nc.subscribe("agentcom.evt.task.submitted")  # pyright: ignore[reportUnknownMemberType]  # nats-py: untyped callback parameter
    traces = [f"{n + 1:032x}" for n in range(12)]

    made = await asyncio.gather(
        *(
            api.post(
                "/api/tasks",
                json={"description": f"traced {n}"},
                headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01"},
            )
            for n, trace in enumerate(traces)
        )
    )

    trace_of = {r.json()["id"]: trace for r, trace in zip(made, traces, strict=True)}
    events = [await sub.next_msg(timeout=10) for _ in traces]
    got = {
        json.loads(e.data)["task_id"]: (e.headers or {})["traceparent"].split("-")[1]
        for e in events
    }
    assert got == trace_of


async def test_stats_count_states_and_queued_lanes(api: httpx.AsyncClient, nc: Client) -> None:
    await submit(api, priority="urgent")
    await submit(api)
    await submit(api)
    assert await claim(nc) is not None  # the urgent one

    over_http = (await api.get("/api/tasks/stats")).json()
    over_nats = await micro.call(nc, "queue", "stats", StatsRequest(), QueueStats)

    for stats in (over_http, over_nats.model_dump()):
        assert stats["by_state"]["queued"] == 2
        assert stats["by_state"]["assigned"] == 1
        assert stats["queued_by_lane"] == {"urgent": 0, "high": 0, "normal": 2, "low": 0}


async def test_a_viewer_can_read_but_not_change(
    api: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    viewer = {"Authorization": f"Bearer {(await auth.issue(engine, auth.Role.VIEWER, 'v')).token}"}
    task = await submit(api)

    assert (await api.get(f"/api/tasks/{task['id']}", headers=viewer)).status_code == 200
    refused = await api.post(f"/api/tasks/{task['id']}/cancel", headers=viewer)
    assert refused.status_code == 403
    assert refused.json()["error"] == "forbidden"


async def test_concurrent_single_submits_each_get_their_own_answer(
    api: httpx.AsyncClient, nc: Client
) -> None:
    sub = await nc.subscribe("agentcom.evt.task.submitted")  # pyright: ignore[reportUnknownMemberType]  # nats-py: untyped callback parameter
    bodies = [SubmitTask(description=f"task {i}", client_key=f"k{i}") for i in range(20)]
    bodies[7] = SubmitTask(description="bad", depends_on=["task-0123456789abcdef"])
    bodies[12] = SubmitTask(description="again", client_key="k3")  # the same key as task 3

    answers = await asyncio.gather(
        *(micro.call(nc, "queue", "submit", body, TaskView) for body in bodies),
        return_exceptions=True,
    )
    http = await api.post("/api/tasks", json=bodies[0].model_dump(exclude_defaults=True))

    refused = answers[7]
    assert isinstance(refused, ConflictError), refused
    assert refused.code == "unknown_dependencies"
    assert "task-0123456789abcdef" in refused.detail
    views = {n: a for n, a in enumerate(answers) if isinstance(a, TaskView)}
    assert sorted(views) == [n for n in range(20) if n != 7], answers
    assert all(a.state == "queued" and a.generation == 0 for a in views.values())
    # 3 and 12 share a client key: whichever the queue stored first is the task both get
    assert views[12].id == views[3].id
    assert views[12].description == views[3].description
    assert views[3].description in ("task 3", "again")
    assert http.status_code == 201
    assert http.json()["id"] == views[0].id
    assert [a.description for n, a in views.items() if n not in (3, 12)] == [
        f"task {i}" for i in range(20) if i not in (3, 7, 12)
    ]
    ids = {a.id for a in views.values()}
    assert len(ids) == 18
    events = [json.loads((await sub.next_msg(timeout=10)).data) for _ in range(18)]
    assert {e["task_id"] for e in events} == ids
    for task_id in ids:
        rows = (await api.get(f"/api/tasks/{task_id}/history")).json()
        assert [(h["from_state"], h["to_state"]) for h in rows] == [(None, "queued")]
