"""Task events: every `agentcom.evt.task.*` body is a `TaskTransition`, whichever path built it.

The single ops build the event from the model in Python (`ops.core.emit`); the batch statements
build it in Postgres from SQL generated from the model's fields (`store_batch.event_sql`).
"""

import json
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import contracts, micro, subjects
from agentcom_common.contracts.task import (
    Claimed,
    ClaimedTasks,
    ClaimTask,
    ClaimTasks,
    Reported,
    ReportedTasks,
    ReportTask,
    ReportTasks,
    RequeueTask,
    SubmitTask,
    SubmitTasks,
    SubmittedTasks,
    TaskState,
    TaskTransition,
    TaskView,
)
from agentcom_common.testing import eventually
from agentcom_queue import ops, states, store_batch

Json = dict[str, Any]
S = TaskState

TRANSITIONS = [
    TaskTransition(
        task_id="task-0123456789abcdef",
        from_state=None,
        to_state=TaskState.QUEUED,
        generation=0,
        reason="submitted",
        actor="admin",
        at=datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC),  # no microseconds: pydantic writes none
    ),
    TaskTransition(
        task_id="task-fedcba9876543210",
        from_state=TaskState.WORKING,
        to_state=TaskState.FAILED,
        generation=3,
        reason='it said "no" \\ ünïcode',
        actor="agent-1",
        at=datetime(2031, 12, 31, 23, 59, 59, 120, tzinfo=UTC),
        goal_id="goal-7",
    ),
    TaskTransition(
        task_id="task-00000000000000aa",
        from_state=TaskState.WORKING,
        to_state=TaskState.COMPLETED,
        generation=1,
        reason="completed",
        actor="agent-1",
        at=datetime(2031, 1, 1, tzinfo=UTC),
        risk_tier=3,
    ),
]


@pytest.mark.parametrize("transition", TRANSITIONS, ids=["no goal", "goal", "risk tier"])
async def test_the_sql_event_is_the_json_of_the_model(
    engine: AsyncEngine, transition: TaskTransition
) -> None:
    sql = store_batch.event_sql(
        task_id="CAST(:task_id AS text)",
        from_state="CAST(:from_state AS text)",
        to_state="CAST(:to_state AS text)",
        generation="CAST(:generation AS int)",
        reason="CAST(:reason AS text)",
        actor="CAST(:actor AS text)",
        goal_id="CAST(:goal_id AS text)",
        risk_tier="CAST(:risk_tier AS int)",
        at=store_batch.at_sql("CAST(:at AS timestamptz)"),
    )
    values = transition.model_dump(mode="json", exclude={"schema_version"})
    values["at"] = transition.at  # the driver takes a datetime for a timestamptz
    async with engine.connect() as conn:
        payload = (await conn.execute(text(f"SELECT {sql}"), values)).scalar_one()

    assert json.loads(payload) == json.loads(transition.model_dump_json())


def test_the_event_sql_names_every_field_of_the_model() -> None:
    with pytest.raises(ValueError, match="goal_id"):
        store_batch.event_sql(
            task_id="1", from_state="1", to_state="1", generation="1", reason="1", actor="1"
        )
    with pytest.raises(ValueError, match="colour"):
        store_batch.event_sql(
            task_id="1",
            from_state="1",
            to_state="1",
            generation="1",
            reason="1",
            actor="1",
            goal_id="1",
            risk_tier="1",
            colour="1",
        )


def test_every_transition_has_an_event_a_consumer_can_decode() -> None:
    moves = [(None, S.QUEUED), (None, S.WAITING)] + [
        (source, target) for source, targets in states.TRANSITIONS.items() for target in targets
    ]

    for source, target in moves:
        assert contracts.EVENTS[ops.event_subject(source, target)] is TaskTransition


M = TypeVar("M", bound=BaseModel)


async def rpc(nc: Client, op: str, body: BaseModel, reply: type[M]) -> M:
    return await micro.call(nc, "queue", op, body, reply, timeout=10)


def reported(task: TaskView, outcome: Reported) -> ReportTask:
    return ReportTask(task_id=task.id, agent_id="a1", generation=task.generation, outcome=outcome)


async def report_batch(nc: Client, task: TaskView, outcome: Reported) -> None:
    await rpc(nc, "report_batch", ReportTasks(reports=[reported(task, outcome)]), ReportedTasks)


async def stream_events(js: JetStreamContext, count: int) -> list[tuple[str, bytes]]:
    """The first `count` task events of the EVENTS stream (once the relay has put them there)."""

    async def stored() -> None:
        info = await js.stream_info(subjects.EVENTS_STREAM, subjects_filter="agentcom.evt.task.>")
        assert sum((info.state.subjects or {}).values()) >= count

    await eventually(stored)
    sub = await js.subscribe("agentcom.evt.task.>", ordered_consumer=True)
    got: list[tuple[str, bytes]] = []
    for _ in range(count):
        msg = await sub.next_msg(timeout=10)
        got.append((msg.subject, msg.data))
    await sub.unsubscribe()
    return got


@pytest.mark.usefixtures("api")
async def test_every_task_event_in_the_stream_carries_its_goal(
    nc: Client, js: JetStreamContext
) -> None:
    # single submit (Python event) and batch submit (SQL event), with and without a goal
    single = SubmitTask(description="one", goal_id="goal-a", max_retries=0)
    one = await rpc(nc, "submit", single, TaskView)
    batch = [
        SubmitTask(description="two", goal_id="goal-b"),
        SubmitTask(description="three", max_retries=0),
    ]
    two, three = (await rpc(nc, "submit_batch", SubmitTasks(tasks=batch), SubmittedTasks)).tasks
    four = await rpc(nc, "submit", SubmitTask(description="four"), TaskView)
    dependent = SubmitTask(description="after", goal_id="goal-b", depends_on=[two.id])
    after_two = await rpc(nc, "submit", dependent, TaskView)
    goal = {one.id: "goal-a", two.id: "goal-b", three.id: None, four.id: None}
    goal[after_two.id] = "goal-b"

    first = (await rpc(nc, "claim", ClaimTask(agent_id="a1"), Claimed)).task  # single claim
    assert first is not None
    rest = (await rpc(nc, "claim_batch", ClaimTasks(agent_id="a1", limit=10), ClaimedTasks)).tasks
    claimed = {t.id: t for t in [first, *rest]}
    assert claimed.keys() == goal.keys() - {after_two.id}
    # single reports: a failure is the Python op's, the others the claim pool's statement
    await rpc(nc, "report", reported(claimed[one.id], "failed"), TaskView)  # then dead-lettered
    await rpc(nc, "report", reported(claimed[four.id], "accepted"), TaskView)
    back = RequeueTask(task_id=four.id, generation=claimed[four.id].generation, reason="r")
    await rpc(nc, "requeue", back, TaskView)
    # batch reports (the batch statement); completing `two` releases its dependent (the
    # settle statement)
    await report_batch(nc, claimed[three.id], "failed")
    await report_batch(nc, claimed[two.id], "accepted")
    await report_batch(nc, claimed[two.id], "completed")

    expected = {
        "submitted": 5,
        "assigned": 4,
        "failed": 2,
        "dead_lettered": 2,
        "accepted": 2,
        "requeued": 1,
        "completed": 1,
        "released": 1,
    }
    events = await stream_events(js, sum(expected.values()))

    names = [subject.rsplit(".", 1)[1] for subject, _ in events]
    assert {name: names.count(name) for name in set(names)} == expected
    for subject, data in events:
        body = json.loads(data)
        assert set(body) == set(TaskTransition.model_fields), subject
        assert body["goal_id"] == goal[body["task_id"]], (subject, body)
        assert TaskTransition.model_validate_json(data).goal_id == goal[body["task_id"]]
    # the same transition built by the Python op and by the batch statement: the same JSON
    failed = {
        json.loads(data)["task_id"]: json.loads(data)
        for subject, data in events
        if subject == "agentcom.evt.task.failed"
    }
    by_python, by_sql = failed[one.id], failed[three.id]
    for body in (by_python, by_sql):
        TaskTransition.model_validate(body)  # `at` in the model's form, whichever wrote it
    ignore = {"task_id", "goal_id", "at"}
    assert {k: v for k, v in by_python.items() if k not in ignore} == {
        k: v for k, v in by_sql.items() if k not in ignore
    }


async def test_the_history_carries_the_goal(api: httpx.AsyncClient) -> None:
    with_goal = (await api.post("/api/tasks", json={"description": "x", "goal_id": "g"})).json()
    without = (await api.post("/api/tasks", json={"description": "y"})).json()

    for task, goal in ((with_goal, "g"), (without, None)):
        rows = (await api.get(f"/api/tasks/{task['id']}/history")).json()
        assert [row["goal_id"] for row in rows] == [goal]
