"""Queue and scheduler together, driven the way a sidecar would: reports in, inbox out."""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from agentcom_common import cancelling
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import eventually, running
from agentcom_queue.app import create_app as queue_app
from agentcom_scheduler.app import create_app as scheduler_app
from agentcom_scheduler.settings import SchedulerSettings

Hub = tuple[httpx.AsyncClient, httpx.AsyncClient]


# Short enough that the silence tests end quickly, long enough that one loop stall on two busy
# cores (these services share the test's event loop) does not make a beating agent look silent.
HEARTBEAT = timedelta(milliseconds=400)
TIMERS = {
    "scheduler_sweep_interval": timedelta(milliseconds=50),
    "scheduler_heartbeat_interval": HEARTBEAT,
    "scheduler_missed_heartbeats": 3,
    "scheduler_accept_timeout": timedelta(seconds=1),
    "scheduler_deadline_grace": timedelta(milliseconds=100),
}


@pytest.fixture
async def hub(settings: CommonSettings, admin_token: str) -> AsyncIterator[Hub]:
    fast = SchedulerSettings.model_validate(settings.model_dump() | TIMERS)
    async with (
        running(queue_app(settings), "http://queue") as queue,
        running(scheduler_app(fast), "http://scheduler") as scheduler,
    ):
        for client in (queue, scheduler):
            client.headers["Authorization"] = f"Bearer {admin_token}"
        yield queue, scheduler


class Inbox:
    """An agent's inbox read the way its sidecar reads it: its durable consumer, acked."""

    def __init__(self, sub: JetStreamContext.PullSubscription) -> None:
        self.sub = sub

    @classmethod
    async def open(cls, js: JetStreamContext, agent: str) -> "Inbox":
        inbox = f"agentcom.agent.{agent}.inbox"
        return cls(await js.pull_subscribe(inbox, durable=f"agent-{agent}", stream="INBOX"))

    async def next_msg(self, timeout: float) -> Msg:
        [msg] = await self.sub.fetch(1, timeout=timeout)
        await msg.ack()
        return msg


async def report(js: JetStreamContext, agent: str, body: dict[str, Any]) -> None:
    await js.publish(
        f"agentcom.agent.{agent}.report", json.dumps(body | {"agent_id": agent}).encode()
    )


async def accept(js: JetStreamContext, inbox: Inbox, agent: str, held: dict[str, Any]) -> None:
    """Say `accepted`, then read the hub's `start` (a sidecar runs nothing before it)."""
    await report(js, agent, held | {"kind": "accepted"})
    start = json.loads((await inbox.next_msg(timeout=10)).data)
    assert start == {"schema_version": 1, "kind": "start"} | held, start


class Pulse:
    """Heartbeats for the agents a test means to keep online, as a live sidecar sends them.

    Without them an agent in these tests is judged silent after ~0.5 s (the timers above), so
    a slow machine would see it go offline before its task arrives; silence is what some tests
    are about, so each test says which agents beat.
    """

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self.agents: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def keep(self, *agents: str) -> None:
        self.agents.update(agents)
        if self._task is None:
            self._task = asyncio.create_task(self._beat())

    def drop(self, agent: str) -> None:
        self.agents.discard(agent)

    async def _beat(self) -> None:
        interval = HEARTBEAT.total_seconds() / 2
        while not self._stopped:
            for agent in sorted(self.agents):
                # as a sidecar's heartbeat loop does: a beat whose publish is not acknowledged
                # in time is lost, not fatal (CI saw a 5 s JetStream ack stall end this loop)
                with contextlib.suppress(NatsError, TimeoutError):
                    await report(self.js, agent, {"kind": "heartbeat"})
            await asyncio.sleep(interval)  # the cadence of a sidecar's heartbeats

    async def stop(self) -> None:
        # a flag and repeated cancels: nats-py's publish waits in `asyncio.wait_for`, which on
        # Python 3.11 can swallow a cancel that lands as its reply does; one plain cancel then
        # left this loop beating and the fixture's teardown waiting for it for good (CI hung)
        self._stopped = True
        if self._task is not None:
            stuck = await cancelling.cancel_and_wait([self._task], grace=10)
            assert not stuck, "the heartbeat loop did not stop"


@pytest.fixture
async def pulse(js: JetStreamContext) -> AsyncIterator[Pulse]:
    beating = Pulse(js)
    yield beating
    await beating.stop()


async def test_a_task_reaches_an_idle_agent_and_completes(
    hub: Hub, js: JetStreamContext, pulse: Pulse
) -> None:
    queue, scheduler = hub
    await scheduler.post("/api/agents", json={"name": "worker", "capabilities": ["python"]})
    inbox = await Inbox.open(js, "worker")
    await report(js, "worker", {"kind": "hello"})
    pulse.keep("worker")
    task = (
        await queue.post("/api/tasks", json={"description": "x", "needed_capabilities": ["python"]})
    ).json()

    assign = json.loads((await inbox.next_msg(timeout=10)).data)
    assert assign["kind"] == "assign"
    assert assign["task"]["id"] == task["id"]
    generation = assign["generation"]

    outcome = {"task_id": task["id"], "generation": generation}
    await accept(js, inbox, "worker", outcome)
    await report(js, "worker", outcome | {"kind": "completed", "result": {"ok": True}})

    async def done() -> None:
        assert (await queue.get(f"/api/tasks/{task['id']}")).json()["state"] == "completed"
        assert (await scheduler.get("/api/agents/worker")).json()["state"] == "idle"

    await eventually(done)
    states = [h["to_state"] for h in (await scheduler.get("/api/agents/worker/history")).json()]
    assert states == ["offline", "idle", "assigned", "working", "idle"]


async def test_an_agent_without_the_capability_gets_nothing(
    hub: Hub, js: JetStreamContext, pulse: Pulse
) -> None:
    queue, scheduler = hub
    await scheduler.post("/api/agents", json={"name": "plain"})
    await report(js, "plain", {"kind": "hello"})
    task = (
        await queue.post("/api/tasks", json={"description": "x", "needed_capabilities": ["gpu"]})
    ).json()
    await scheduler.post("/api/agents", json={"name": "gpu-box", "capabilities": ["gpu"]})
    await report(js, "gpu-box", {"kind": "hello"})
    pulse.keep("plain", "gpu-box")

    async def on_the_gpu_box() -> None:
        assert (await queue.get(f"/api/tasks/{task['id']}")).json()["assigned_to"] == "gpu-box"

    await eventually(on_the_gpu_box)
    assert (await scheduler.get("/api/agents/plain")).json()["state"] == "idle"


async def test_a_stale_outcome_changes_nothing(
    hub: Hub, js: JetStreamContext, pulse: Pulse
) -> None:
    queue, scheduler = hub
    await scheduler.post("/api/agents", json={"name": "w"})
    inbox = await Inbox.open(js, "w")
    await report(js, "w", {"kind": "hello"})
    pulse.keep("w")
    task = (await queue.post("/api/tasks", json={"description": "x"})).json()
    generation = json.loads((await inbox.next_msg(timeout=10)).data)["generation"]
    # accepted, so that no accept timeout hands it back while the stale report is judged
    await accept(js, inbox, "w", {"task_id": task["id"], "generation": generation})
    stale = {"kind": "completed", "task_id": task["id"], "generation": generation + 6}
    await report(js, "w", stale)

    async def every_report_handled() -> None:
        info = await js.consumer_info("REPORTS", "scheduler-presence")
        assert (info.num_pending, info.num_ack_pending) == (0, 0)

    await eventually(every_report_handled)
    assert (await queue.get(f"/api/tasks/{task['id']}")).json()["state"] == "working"
    assert (await scheduler.get("/api/agents/w")).json()["state"] == "working"


async def test_an_agent_that_goes_silent_hands_its_task_back_with_a_retry_counted(
    hub: Hub, js: JetStreamContext
) -> None:
    queue, scheduler = hub
    await scheduler.post("/api/agents", json={"name": "flaky"})
    await report(js, "flaky", {"kind": "hello"})
    task = (await queue.post("/api/tasks", json={"description": "x"})).json()

    async def assigned() -> None:
        assert (await queue.get(f"/api/tasks/{task['id']}")).json()["assigned_to"] == "flaky"

    await eventually(assigned)
    await report(js, "flaky", {"kind": "accepted", "task_id": task["id"], "generation": 1})
    # then silence: no heartbeat ever comes

    async def handed_back() -> None:
        back = (await queue.get(f"/api/tasks/{task['id']}")).json()
        assert back["retry_count"] == 1
        assert "went offline" in back["last_error"]
        assert (await scheduler.get("/api/agents/flaky")).json()["state"] == "offline"

    await eventually(handed_back)


async def test_an_assignment_nobody_accepts_goes_back_without_a_retry(
    hub: Hub, js: JetStreamContext
) -> None:
    queue, scheduler = hub
    await scheduler.post("/api/agents", json={"name": "mute"})
    task = (await queue.post("/api/tasks", json={"description": "x"})).json()
    await report(js, "mute", {"kind": "hello"})

    async def given_back() -> None:
        history = (await queue.get(f"/api/tasks/{task['id']}/history")).json()
        assert any(h["reason"] == "agent mute did not accept in time" for h in history)

    for _ in range(3):  # keep the agent alive: only the acceptance is missing
        await report(js, "mute", {"kind": "heartbeat"})
        await asyncio.sleep(0.2)  # the heartbeat interval itself
    await eventually(given_back)
    assert (await queue.get(f"/api/tasks/{task['id']}")).json()["retry_count"] == 0


async def test_hello_after_reconnect_keeps_an_agreed_task_and_its_completion_counts(
    hub: Hub, js: JetStreamContext, pulse: Pulse
) -> None:
    queue, scheduler = hub
    await scheduler.post("/api/agents", json={"name": "phoenix"})
    inbox = await Inbox.open(js, "phoenix")
    await report(js, "phoenix", {"kind": "hello"})
    pulse.keep("phoenix")
    task = (await queue.post("/api/tasks", json={"description": "x"})).json()
    assign = json.loads((await inbox.next_msg(timeout=10)).data)
    held = {"task_id": task["id"], "generation": assign["generation"]}
    await accept(js, inbox, "phoenix", held)

    await report(js, "phoenix", held | {"kind": "hello"})  # reconnected, still on it
    await report(js, "phoenix", held | {"kind": "completed"})

    async def completed() -> None:
        assert (await queue.get(f"/api/tasks/{task['id']}")).json()["state"] == "completed"

    await eventually(completed)


async def test_hello_with_a_task_the_hub_does_not_hold_gets_a_cancel(
    hub: Hub, js: JetStreamContext
) -> None:
    _, scheduler = hub
    await scheduler.post("/api/agents", json={"name": "stale"})
    inbox = await Inbox.open(js, "stale")

    await report(
        js, "stale", {"kind": "hello", "task_id": "task-0123456789abcdef", "generation": 3}
    )

    cancel = json.loads((await inbox.next_msg(timeout=10)).data)
    assert cancel == {
        "schema_version": 1,
        "kind": "cancel",
        "task_id": "task-0123456789abcdef",
        "generation": 3,
        "reason": "stale",
    }


async def test_hello_without_the_task_the_hub_gave_puts_it_back(
    hub: Hub, js: JetStreamContext
) -> None:
    queue, scheduler = hub
    await scheduler.post("/api/agents", json={"name": "amnesiac"})
    await report(js, "amnesiac", {"kind": "hello"})
    task = (await queue.post("/api/tasks", json={"description": "x"})).json()

    async def assigned() -> None:
        assert (await queue.get(f"/api/tasks/{task['id']}")).json()["assigned_to"] == "amnesiac"

    await eventually(assigned)
    await report(js, "amnesiac", {"kind": "hello"})  # restarted and remembers nothing

    async def put_back() -> None:
        history = (await queue.get(f"/api/tasks/{task['id']}/history")).json()
        assert any("amnesiac" in h["reason"] and h["to_state"] == "queued" for h in history)

    await eventually(put_back)


async def test_restart_is_sent_to_the_inbox_and_restarting_is_no_error(
    hub: Hub, js: JetStreamContext
) -> None:
    _, scheduler = hub
    await scheduler.post("/api/agents", json={"name": "r1"})
    inbox = await Inbox.open(js, "r1")

    sent = await scheduler.post("/api/agents/r1/restart")
    await report(js, "r1", {"kind": "restarting"})

    assert sent.status_code == 202
    assert json.loads((await inbox.next_msg(timeout=10)).data)["kind"] == "restart"

    async def handled() -> None:
        info = await js.consumer_info("REPORTS", "scheduler-presence")
        assert (info.num_pending, info.num_ack_pending) == (0, 0)
        assert (await scheduler.get("/api/agents/r1")).json()["state"] == "idle"

    await eventually(handled)
    stats = (await scheduler.get("/api/scheduler/stats")).json()
    assert stats["agents_by_state"]["idle"] == 1


async def test_a_task_past_its_deadline_is_cancelled_at_the_agent_and_retried(
    hub: Hub, js: JetStreamContext
) -> None:
    queue, scheduler = hub
    await scheduler.post("/api/agents", json={"name": "slow"})
    inbox = await Inbox.open(js, "slow")
    await report(js, "slow", {"kind": "hello"})
    soon = (datetime.now(UTC) + timedelta(milliseconds=300)).isoformat()
    task = (await queue.post("/api/tasks", json={"description": "x", "complete_by": soon})).json()
    assign = json.loads((await inbox.next_msg(timeout=10)).data)
    held = {"task_id": task["id"], "generation": assign["generation"]}
    await accept(js, inbox, "slow", held)
    for _ in range(6):  # alive, just slow: heartbeats continue past the deadline
        await report(js, "slow", {"kind": "heartbeat"})
        await asyncio.sleep(0.1)  # the heartbeat interval itself

    cancel = json.loads((await inbox.next_msg(timeout=10)).data)
    assert (cancel["kind"], cancel["task_id"], cancel["reason"]) == (
        "cancel",
        task["id"],
        "deadline",
    )

    async def retried() -> None:
        back = (await queue.get(f"/api/tasks/{task['id']}")).json()
        assert back["retry_count"] == 1
        assert "deadline" in back["last_error"]

    await eventually(retried)


async def test_a_rejected_assignment_fails_the_attempt_at_once_with_its_reason(
    hub: Hub, js: JetStreamContext, pulse: Pulse
) -> None:
    queue, scheduler = hub
    await scheduler.post("/api/agents", json={"name": "picky"})
    inbox = await Inbox.open(js, "picky")
    await report(js, "picky", {"kind": "hello"})
    pulse.keep("picky")
    task = (await queue.post("/api/tasks", json={"description": "x", "max_retries": 0})).json()
    assign = json.loads((await inbox.next_msg(timeout=10)).data)

    await report(
        js,
        "picky",
        {
            "kind": "rejected",
            "task_id": task["id"],
            "generation": assign["generation"],
            "error": "no wake command configured",
        },
    )

    async def dead_lettered() -> None:
        back = (await queue.get(f"/api/tasks/{task['id']}")).json()
        assert back["state"] == "dead_letter"
        assert back["last_error"] == "rejected: no wake command configured"
        assert (await scheduler.get("/api/agents/picky")).json()["state"] == "idle"

    await eventually(dead_lettered)


@pytest.fixture
async def strict_hub(settings: CommonSettings, admin_token: str) -> AsyncIterator[Hub]:
    rules = TIMERS | {"scheduler_working_offline_timeout": timedelta(milliseconds=300)}
    fast = SchedulerSettings.model_validate(settings.model_dump() | rules)
    async with (
        running(queue_app(settings), "http://queue") as queue,
        running(scheduler_app(fast), "http://scheduler") as scheduler,
    ):
        for client in (queue, scheduler):
            client.headers["Authorization"] = f"Bearer {admin_token}"
        yield queue, scheduler


async def test_a_task_working_too_long_on_an_agent_that_is_gone_is_requeued(
    strict_hub: Hub, js: JetStreamContext, pulse: Pulse
) -> None:
    queue, scheduler = strict_hub
    tasks: dict[str, str] = {}
    for name in ("gone", "alive"):
        await scheduler.post("/api/agents", json={"name": name, "capabilities": [name]})
        inbox = await Inbox.open(js, name)
        await report(js, name, {"kind": "hello"})
        pulse.keep(name)
        made = await queue.post(
            "/api/tasks", json={"description": name, "needed_capabilities": [name]}
        )
        tasks[name] = made.json()["id"]
        assign = json.loads((await inbox.next_msg(timeout=10)).data)
        await accept(js, inbox, name, {"task_id": tasks[name], "generation": 1})
        assert assign["task"]["id"] == tasks[name]

    async def working() -> None:
        for task_id in tasks.values():
            assert (await queue.get(f"/api/tasks/{task_id}")).json()["state"] == "working"

    await eventually(working)
    pulse.drop("gone")
    await scheduler.delete("/api/agents/gone")  # removed mid-task: no sweep of its own sees it

    async def requeued() -> None:
        history = (await queue.get(f"/api/tasks/{tasks['gone']}/history")).json()
        assert any("on agent gone, which is offline" in h["reason"] for h in history)

    await eventually(requeued)
    assert (await queue.get(f"/api/tasks/{tasks['alive']}")).json()["state"] == "working"


async def test_a_nan_in_an_outcome_is_refused_and_a_good_one_still_lands(
    hub: Hub, js: JetStreamContext, pulse: Pulse
) -> None:
    """A NaN in an outcome's `result` is refused where it enters (a malformed report, as an
    HTTP body with one is a 422), not forwarded and stored as null (issue 15)."""
    queue, scheduler = hub
    await scheduler.post("/api/agents", json={"name": "worker"})
    inbox = await Inbox.open(js, "worker")
    await report(js, "worker", {"kind": "hello"})
    pulse.keep("worker")
    task = (await queue.post("/api/tasks", json={"description": "x"})).json()
    generation = json.loads((await inbox.next_msg(timeout=10)).data)["generation"]
    outcome = {"task_id": task["id"], "generation": generation}
    await report(js, "worker", outcome | {"kind": "accepted"})

    await report(js, "worker", outcome | {"kind": "completed", "result": {"ratio": float("nan")}})

    async def all_handled() -> None:
        info = await js.consumer_info("REPORTS", "scheduler-presence")
        assert (info.num_pending, info.num_ack_pending) == (0, 0)

    await eventually(all_handled)
    assert (await queue.get(f"/api/tasks/{task['id']}")).json()["state"] == "working"

    await report(js, "worker", outcome | {"kind": "completed", "result": {"ratio": 0.5}})

    async def completed() -> None:
        done = (await queue.get(f"/api/tasks/{task['id']}")).json()
        assert (done["state"], done["result"]) == ("completed", {"ratio": 0.5})

    await eventually(completed)


async def test_an_acceptance_after_the_task_was_taken_back_gets_a_cancel_never_a_start(
    hub: Hub, js: JetStreamContext, pulse: Pulse
) -> None:
    """The fence against a task running on two agents (issue 14): the hub took the task back
    (no `accepted` in time: a NATS restart can make an assignment look unsent while the inbox
    stored it), so the late `accepted` is answered with a cancel, and the sidecar, which runs
    nothing before a `start`, never runs that generation. Every run there is is in the task's
    history: only the generation whose `accepted` applied was started."""
    queue, scheduler = hub
    await scheduler.post("/api/agents", json={"name": "late"})
    inbox = await Inbox.open(js, "late")
    await report(js, "late", {"kind": "hello"})
    pulse.keep("late")
    task = (await queue.post("/api/tasks", json={"description": "x"})).json()
    first = json.loads((await inbox.next_msg(timeout=10)).data)
    assert (first["kind"], first["generation"]) == ("assign", 1)

    async def taken_back() -> None:
        history = (await queue.get(f"/api/tasks/{task['id']}/history")).json()
        assert any(h["reason"] == "agent late did not accept in time" for h in history)

    await eventually(taken_back)
    await report(js, "late", {"kind": "accepted", "task_id": task["id"], "generation": 1})

    told: list[dict[str, Any]] = []
    while not any(m["kind"] == "cancel" and m["generation"] == 1 for m in told):
        told.append(json.loads((await inbox.next_msg(timeout=10)).data))
    assert not any(m["kind"] == "start" and m["generation"] == 1 for m in told), told
    cancel = next(m for m in told if m["kind"] == "cancel")
    assert (cancel["task_id"], cancel["reason"]) == (task["id"], "superseded")

    again = next((m for m in told if m["kind"] == "assign"), None)
    if again is None:  # given back to the same agent (the only one) at the next generation
        again = json.loads((await inbox.next_msg(timeout=10)).data)
    held = {"task_id": task["id"], "generation": again["generation"]}
    assert held["generation"] > 1
    await accept(js, inbox, "late", held)
    await report(js, "late", held | {"kind": "completed"})

    async def completed() -> None:
        assert (await queue.get(f"/api/tasks/{task['id']}")).json()["state"] == "completed"

    await eventually(completed)
    history = (await queue.get(f"/api/tasks/{task['id']}/history")).json()
    runs = [h for h in history if h["to_state"] == "working"]
    assert [(h["generation"], h["actor"]) for h in runs] == [(held["generation"], "late")]


async def test_an_assignment_crossing_a_blocked_heartbeat_goes_back_unretried_and_waits(
    hub: Hub, js: JetStreamContext
) -> None:
    """A sidecar that cannot take work rejects what reached it meanwhile with `agent_blocked`
    (what `Work` sends then): no retry is used, the agent is blocked and gets nothing until a
    heartbeat no longer says blocked, and then the task comes back to it."""
    queue, scheduler = hub
    await scheduler.post("/api/agents", json={"name": "full"})
    inbox = await Inbox.open(js, "full")
    await report(js, "full", {"kind": "hello"})
    task = (await queue.post("/api/tasks", json={"description": "x"})).json()
    first = json.loads((await inbox.next_msg(timeout=10)).data)
    why = "only 3 MB free for workspaces; this agent needs 200 MB (min_free_disk_mb)"
    held = {"task_id": task["id"], "generation": first["generation"]}
    await report(js, "full", held | {"kind": "rejected", "code": "agent_blocked", "error": why})

    async def back_and_blocked() -> None:
        now = (await queue.get(f"/api/tasks/{task['id']}")).json()
        assert (now["state"], now["retry_count"]) == ("queued", 0), now
        agent = (await scheduler.get("/api/agents/full")).json()
        assert (agent["state"], agent["blocked_reason"]) == ("blocked", why), agent

    for _ in range(3):  # blocked heartbeats keep it blocked (and online)
        await report(js, "full", {"kind": "heartbeat", "blocked": why})
        await asyncio.sleep(0.2)  # the heartbeat interval itself
    await eventually(back_and_blocked)
    assert (await queue.get(f"/api/tasks/{task['id']}")).json()["state"] == "queued"

    await report(js, "full", {"kind": "heartbeat"})  # the disk is back
    again = json.loads((await inbox.next_msg(timeout=10)).data)
    assert (again["kind"], again["task"]["id"]) == ("assign", task["id"])
    agent = (await scheduler.get("/api/agents/full")).json()
    assert agent["blocked_reason"] is None
