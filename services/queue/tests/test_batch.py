"""The batch RPCs (submit_batch, claim_batch, report_batch): the single ops' rules, many at once."""

import asyncio
import json
from typing import Any

import httpx
import pytest
from nats.aio.client import Client
from nats.aio.subscription import Subscription

from agentcom_common import micro
from agentcom_common.contracts.task import (
    ClaimedTasks,
    ClaimForAgents,
    ClaimTasks,
    Reported,
    ReportedTasks,
    ReportOutcome,
    ReportTask,
    ReportTasks,
    RequeueTask,
    SubmitTask,
    SubmitTasks,
    SubmittedTasks,
    TaskRef,
    TaskState,
    TaskView,
)
from agentcom_common.errors import ConflictError, InvalidError

Json = dict[str, Any]


async def refused(nc: Client, op: str, body: Json) -> tuple[str, str]:
    """(code, detail) of a request its contract refuses: sent as raw JSON, since `micro.call`
    takes only a request that validates."""
    reply = await nc.request(f"agentcom.rpc.queue.{op}", json.dumps(body).encode(), timeout=10)
    headers = reply.headers or {}
    return headers.get(micro.ERROR_CODE, "no error"), headers.get(micro.ERROR_DETAIL, "")


async def submit_batch(nc: Client, tasks: list[SubmitTask]) -> list[TaskRef]:
    body = SubmitTasks(tasks=tasks)
    return (await micro.call(nc, "queue", "submit_batch", body, SubmittedTasks)).tasks


async def submit_many(nc: Client, count: int, **fields: Any) -> list[TaskRef]:
    return await submit_batch(
        nc, [SubmitTask(description=f"task {i}", **fields) for i in range(count)]
    )


async def claim_many(nc: Client, limit: int, agent: str = "a1") -> list[TaskView]:
    body = ClaimTasks(agent_id=agent, limit=limit)
    return list((await micro.call(nc, "queue", "claim_batch", body, ClaimedTasks)).tasks)


async def claim_agents(nc: Client, agents: list[str], **fields: Any) -> list[TaskView]:
    body = ClaimForAgents(agent_ids=agents, **fields)
    return list((await micro.call(nc, "queue", "claim_agents", body, ClaimedTasks)).tasks)


async def report_many(
    nc: Client,
    tasks: list[TaskView] | list[TaskRef],
    outcome: Reported,
    agent: str = "a1",
    **fields: Any,
) -> list[ReportOutcome]:
    reports = [
        ReportTask(task_id=t.id, agent_id=agent, generation=t.generation, outcome=outcome, **fields)
        for t in tasks
    ]
    body = ReportTasks(reports=reports)
    return list((await micro.call(nc, "queue", "report_batch", body, ReportedTasks)).results)


async def history(api: httpx.AsyncClient, task_id: str) -> list[Json]:
    return (await api.get(f"/api/tasks/{task_id}/history")).json()


async def events(sub: Subscription, count: int) -> list[tuple[str, Json]]:
    got: list[tuple[str, Json]] = []
    for _ in range(count):
        msg = await sub.next_msg(timeout=10)
        got.append((msg.subject.rsplit(".", 1)[1], json.loads(msg.data)))
    return got


async def test_a_batch_is_submitted_in_order_and_claimed_fifo(
    api: httpx.AsyncClient, nc: Client
) -> None:
    submitted = await submit_many(nc, 5)
    urgent = await submit_many(nc, 1, priority="urgent")

    claimed = await claim_many(nc, 10)

    assert [t.id for t in claimed] == [t.id for t in urgent + submitted]
    assert {t.state for t in claimed} == {"assigned"}
    assert {t.generation for t in claimed} == {1}
    assert {t.assigned_to for t in claimed} == {"a1"}
    assert await claim_many(nc, 10) == []
    assert [h["to_state"] for h in await history(api, submitted[0].id)] == [
        "queued",
        "assigned",
    ]


@pytest.mark.usefixtures("api")
async def test_claim_batch_takes_at_most_its_limit(nc: Client) -> None:
    await submit_many(nc, 7)

    assert len(await claim_many(nc, 3)) == 3
    assert len(await claim_many(nc, 3)) == 3
    assert len(await claim_many(nc, 3)) == 1


async def test_every_batch_transition_has_its_event_and_history_row(
    api: httpx.AsyncClient, nc: Client
) -> None:
    sub = await nc.subscribe("agentcom.evt.task.>")  # pyright: ignore[reportUnknownMemberType]  # nats-py: untyped callback parameter
    submitted = await submit_many(nc, 3)
    claimed = await claim_many(nc, 3)
    await report_many(nc, claimed, "accepted")
    await report_many(nc, claimed, "completed")

    got = await events(sub, 12)

    ids = sorted(t.id for t in submitted)
    for name, source, target in [
        ("submitted", None, "queued"),
        ("assigned", "queued", "assigned"),
        ("accepted", "assigned", "working"),
        ("completed", "working", "completed"),
    ]:
        mine = [body for event, body in got if event == name]
        assert sorted(b["task_id"] for b in mine) == ids, name
        assert {(b["from_state"], b["to_state"]) for b in mine} == {(source, target)}
        assert {b["generation"] for b in mine} == ({0} if name == "submitted" else {1})
    for task_id in ids:
        rows = await history(api, task_id)
        assert [(h["to_state"], h["reason"]) for h in rows] == [
            ("queued", "submitted"),
            ("assigned", "claimed"),
            ("working", "accepted"),
            ("completed", "completed"),
        ]
        assert [h["actor"] for h in rows[1:]] == ["a1", "a1", "a1"]


async def test_a_stale_report_is_refused_alone_and_changes_nothing(
    api: httpx.AsyncClient, nc: Client
) -> None:
    await submit_many(nc, 2)
    first, second = await claim_many(nc, 2)
    back = RequeueTask(task_id=first.id, generation=1, reason="agent lost")
    await micro.call(nc, "queue", "requeue", back, TaskView)
    reclaimed = await claim_many(nc, 1, agent="a2")
    assert reclaimed[0].id == first.id
    assert reclaimed[0].generation == 2

    results = await report_many(nc, [first, second], "accepted")

    assert results[0].ok is False
    assert results[0].error_code == "stale_generation"
    assert (results[1].ok, results[1].state, results[1].generation) == (True, "working", 1)
    task = (await api.get(f"/api/tasks/{first.id}")).json()
    assert (task["state"], task["assigned_to"], task["generation"]) == ("assigned", "a2", 2)


async def test_a_repeated_batch_report_is_acknowledged_without_a_second_change(
    api: httpx.AsyncClient, nc: Client
) -> None:
    await submit_many(nc, 2)
    claimed = await claim_many(nc, 2)
    await report_many(nc, claimed, "accepted")

    again = await report_many(nc, claimed, "accepted")

    assert [(r.ok, r.state) for r in again] == [(True, "working"), (True, "working")]
    rows = await history(api, claimed[0].id)
    assert [h["to_state"] for h in rows] == ["queued", "assigned", "working"]


@pytest.mark.usefixtures("api")
async def test_batch_reports_check_agent_and_task(nc: Client) -> None:
    await submit_many(nc, 1)
    (mine,) = await claim_many(nc, 1)

    wrong_agent = await report_many(nc, [mine], "accepted", agent="intruder")
    unknown = TaskRef(id="task-0123456789abcdef", state=TaskState.ASSIGNED, generation=1)
    missing = await report_many(nc, [unknown], "accepted")

    assert wrong_agent[0].error_code == "wrong_agent"
    assert missing[0].error_code == "task_not_found"


async def test_an_outcome_may_follow_the_claim_without_accepted(
    api: httpx.AsyncClient, nc: Client
) -> None:
    sub = await nc.subscribe("agentcom.evt.task.>")  # pyright: ignore[reportUnknownMemberType]  # nats-py: untyped callback parameter
    await submit_many(nc, 3)
    claimed = await claim_many(nc, 3)

    results = await report_many(nc, claimed[:1], "completed")
    results += await report_many(nc, claimed[1:2], "partial_pass")
    results += await report_many(nc, claimed[2:], "failed", error="boom")
    again = await report_many(nc, claimed[:1], "completed")
    got = await events(sub, 3 + 3 + 3 + 1)  # submitted, assigned, outcome; the retry of `failed`

    assert [(r.ok, r.state) for r in results] == [
        (True, "completed"),
        (True, "partial_pass"),
        (True, "queued"),  # retried: max_retries 3
    ]
    assert again == results[:1]
    ends = {
        (n, b["from_state"], b["to_state"]) for n, b in got if n not in {"submitted", "assigned"}
    }
    assert ends == {
        ("completed", "assigned", "completed"),
        ("partial_pass", "assigned", "partial_pass"),
        ("failed", "assigned", "failed"),
        ("retried", "failed", "queued"),
    }
    assert [
        (h["from_state"], h["to_state"], h["reason"], h["generation"])
        for h in await history(api, claimed[0].id)
    ] == [
        (None, "queued", "submitted", 0),
        ("queued", "assigned", "claimed", 1),
        ("assigned", "completed", "completed", 1),
    ]


async def test_batch_failures_retry_then_dead_letter(api: httpx.AsyncClient, nc: Client) -> None:
    await submit_many(nc, 2, max_retries=1)

    for expected in ("queued", "dead_letter"):
        claimed = await claim_many(nc, 2)
        assert len(claimed) == 2
        await report_many(nc, claimed, "accepted")
        results = await report_many(nc, claimed, "failed", error="boom")
        assert {r.state for r in results} == {expected}

    task = (await api.get(f"/api/tasks/{claimed[0].id}")).json()
    assert (task["state"], task["last_error"], task["retry_count"]) == ("dead_letter", "boom", 1)


async def test_a_batch_completion_releases_dependents(api: httpx.AsyncClient, nc: Client) -> None:
    parent = (await submit_many(nc, 1))[0]
    child = (await submit_many(nc, 1, depends_on=[parent.id]))[0]
    assert child.state == "waiting"

    claimed = await claim_many(nc, 5)
    assert [t.id for t in claimed] == [parent.id]
    await report_many(nc, claimed, "accepted")
    await report_many(nc, claimed, "completed")

    assert (await api.get(f"/api/tasks/{child.id}")).json()["state"] == "queued"


async def test_submit_batch_keeps_client_keys_idempotent(
    api: httpx.AsyncClient, nc: Client
) -> None:
    (before,) = await submit_batch(nc, [SubmitTask(description="x", client_key="k1")])

    tasks = [
        SubmitTask(description="again", client_key="k1"),
        SubmitTask(description="new", client_key="k2"),
        SubmitTask(description="new twice", client_key="k2"),
    ]
    refs = await submit_batch(nc, tasks)

    assert refs[0].id == before.id
    assert refs[1].id == refs[2].id != before.id
    listed = (await api.get("/api/tasks")).json()["tasks"]
    assert len(listed) == 2


@pytest.mark.usefixtures("api")
async def test_submit_batch_names_the_bad_task(nc: Client) -> None:
    unknown = SubmitTask(description="x", depends_on=["task-0123456789abcdef"])
    with pytest.raises(ConflictError) as caught:
        await submit_batch(nc, [SubmitTask(description="ok"), unknown])
    assert caught.value.code == "unknown_dependencies"
    assert "task-0123456789abcdef" in caught.value.detail

    code, detail = await refused(
        nc, "submit_batch", {"tasks": [{"description": "ok"}, {"priorty": "x"}]}
    )
    assert code == "invalid_field"
    assert detail.startswith("tasks.1.")


@pytest.mark.usefixtures("api")
async def test_batch_limits_are_enforced_by_field(nc: Client) -> None:
    too_many = await refused(nc, "claim_batch", {"agent_id": "a1", "limit": 1001})
    empty = await refused(nc, "report_batch", {"reports": []})
    await submit_many(nc, 1)
    claimed = await claim_many(nc, 1)
    with pytest.raises(InvalidError) as twice:
        await report_many(nc, claimed * 2, "accepted")

    assert (too_many[0], too_many[1].split(":")[0]) == ("invalid_field", "limit")
    assert (empty[0], empty[1].split(":")[0]) == ("invalid_field", "reports")
    assert "reported twice" in twice.value.detail
    assert twice.value.field == "reports.1.task_id"


async def test_a_submitted_batch_inherits_the_top_active_repo(
    api: httpx.AsyncClient, nc: Client
) -> None:
    await api.post("/api/repos", json={"url": "https://example.test/top.git"})

    refs = await submit_many(nc, 2)
    own = await submit_many(nc, 1, repo="https://example.test/own.git/")

    views = [(await api.get(f"/api/tasks/{r.id}")).json() for r in refs + own]
    assert [(v["repo"], v["repo_url"]) for v in views] == [
        ("https://example.test/top", "https://example.test/top.git"),
        ("https://example.test/top", "https://example.test/top.git"),
        ("https://example.test/own", "https://example.test/own.git"),
    ]


@pytest.mark.usefixtures("api")
async def test_concurrent_batch_claimers_never_share_a_task(nc: Client) -> None:
    made = [t.id for t in await submit_many(nc, 200)]

    async def claimer(agent: str) -> list[str]:
        got: list[str] = []
        while batch := await claim_many(nc, 7, agent=agent):
            got += [t.id for t in batch]
        return got

    claimed = await asyncio.gather(*(claimer(f"agent-{i}") for i in range(10)))

    every = [task_id for batch in claimed for task_id in batch]
    assert len(every) == len(set(every)) == 200
    assert set(every) == set(made)


async def test_a_batch_task_is_stored_as_a_single_submit_stores_it(
    api: httpx.AsyncClient, nc: Client
) -> None:
    body: Json = {
        "description": 'Refactor the parser — ünïcode and "quotes"',
        "priority": "high",
        "metadata": {"team": "core", "n": 3, "nested": {"ok": True}},
        "max_retries": 5,
        "complete_by": "2031-01-02T03:04:05Z",
        "needed_capabilities": ["python", "git"],
        "repo": "https://example.test/own.git",
        "branch": "main",
        "file_hints": [{"path": "src/parser.py", "reason": "here"}],
        "success_criteria": ["tests pass"],
        "verification_steps": [{"type": "test_passes", "command": "pytest -q"}],
        "goal_id": "goal-1",
    }
    single = (await api.post("/api/tasks", json=body)).json()
    (ref,) = await submit_batch(nc, [SubmitTask.model_validate(body)])
    batched = (await api.get(f"/api/tasks/{ref.id}")).json()

    ignored = {"id", "created_at", "updated_at", "waiting_reason"}  # a GET's answer, not stored
    assert {k: v for k, v in batched.items() if k not in ignored} == {
        k: v for k, v in single.items() if k not in ignored
    }


async def test_a_batch_task_depending_on_a_dead_letter_is_blocked(
    api: httpx.AsyncClient, nc: Client
) -> None:
    parent = (await submit_many(nc, 1, max_retries=0))[0]
    claimed = await claim_many(nc, 1)
    await report_many(nc, claimed, "accepted")
    assert (await report_many(nc, claimed, "failed"))[0].state == "dead_letter"

    child = (await submit_many(nc, 1, depends_on=[parent.id]))[0]

    shown = (await api.get(f"/api/tasks/{child.id}")).json()
    assert shown["state"] == "waiting"
    assert parent.id in shown["blocked_reason"]


async def test_claim_agents_gives_one_task_each_best_first(
    api: httpx.AsyncClient, nc: Client
) -> None:
    made = await submit_many(nc, 3)

    got = await claim_agents(nc, ["first", "second", "third", "fourth"])
    again = await claim_agents(nc, ["fifth"])

    assert [(t.id, t.assigned_to) for t in got] == [
        (made[0].id, "first"),
        (made[1].id, "second"),
        (made[2].id, "third"),
    ]
    assert [t.generation for t in got] == [1, 1, 1]
    assert again == []
    trail = await history(api, made[1].id)
    assert (trail[-1]["to_state"], trail[-1]["actor"]) == ("assigned", "second")
    # the agent named on the task is the one the queue accepts reports from
    results = await report_many(nc, got[1:2], "accepted", agent="second")
    wrong = await report_many(nc, got[2:3], "accepted", agent="second")
    assert results[0].ok is True
    assert wrong[0].error_code == "wrong_agent"


@pytest.mark.usefixtures("api")
async def test_claim_agents_honours_capabilities_and_refuses_a_repeated_agent(nc: Client) -> None:
    await submit_many(nc, 2, needed_capabilities=["gpu"])
    await submit_many(nc, 1)

    plain = await claim_agents(nc, ["a", "b"])
    with pytest.raises(InvalidError) as twice:
        await claim_agents(nc, ["c", "c"])
    gpu = await claim_agents(nc, ["c", "d", "e"], capabilities=["gpu"])

    assert [t.needed_capabilities for t in plain] == [[]]
    assert twice.value.field == "agent_ids"
    assert [(t.assigned_to, t.needed_capabilities) for t in gpu] == [
        ("c", ["gpu"]),
        ("d", ["gpu"]),
    ]


@pytest.mark.usefixtures("api")
async def test_concurrent_agent_claimers_never_share_a_task(nc: Client) -> None:
    made = [t.id for t in await submit_many(nc, 120)]

    async def claimer(group: int) -> list[str]:
        got: list[str] = []
        agents = [f"g{group}-{i}" for i in range(5)]
        while batch := await claim_agents(nc, agents):
            got += [t.id for t in batch]
        return got

    claimed = await asyncio.gather(*(claimer(g) for g in range(6)))

    every = [task_id for batch in claimed for task_id in batch]
    assert len(every) == len(set(every)) == 120
    assert set(every) == set(made)
