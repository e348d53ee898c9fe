"""A sidecar runs only what the hub said `start` for (issue 14: a task ran on two agents).

The scheduler may take an assignment back before the agent's `accepted` applies (the accept
timeout, a NATS restart making a stored assignment look unsent) and give it to another agent.
The sidecar therefore runs nothing it was merely assigned: it accepts, waits for the hub's
`start` (sent once the queue holds the task as working on it) and drops the task on a cancel.
Driven through the real queue, scheduler and sidecar.
"""

from typing import Any

from nats.js import JetStreamContext

from agentcom_common import subjects
from agentcom_common.contracts.agent import Assign
from agentcom_common.messaging import publish
from agentcom_common.testing import eventually, task_view
from agentcom_sidecar.journal import Journal


async def test_an_assignment_the_queue_no_longer_holds_is_accepted_then_dropped_unrun(
    hub: Any, run_sidecar: Any, listen: Any, js: JetStreamContext
) -> None:
    config = await hub.agent("fenced", allow_hub_commands=True)
    # the mark a run leaves, in the task's own workspace: the only place a command may write
    scratch = config.workspaces / "scratch"
    heard = await listen("fenced")
    async with run_sidecar(config):
        # an assignment of a generation the hub has taken back (here: one it never made)
        ghost = task_view(
            id="task-00000000000000fe",
            description="taken back",
            metadata={"command": ["touch", "ran"]},
        )
        await publish(js, subjects.agent_inbox("fenced"), Assign(task=ghost, generation=1))

        async def dropped() -> None:
            kinds = [
                r["kind"]
                for r in heard
                if r.get("task_id") == ghost.id and r["kind"] not in ("hello", "heartbeat")
            ]
            assert kinds == ["accepted", "cancelled"], kinds

        await eventually(dropped, timeout=30)
        assert not (scratch / ghost.id / "ran").exists()  # accepted, never started

        made = await hub.submit(metadata={"command": ["touch", "ran"]})  # then: real work

        async def completed() -> None:
            assert (await hub.task(made["id"]))["state"] == "completed"

        await eventually(completed, timeout=30)
    assert (scratch / made["id"] / "ran").exists()
    journal = Journal(config.journal_path)
    try:
        assert journal.phase(ghost.id, 1) == "cancelled"
    finally:
        journal.close()
    history = await hub.history(made["id"])
    assert [h["actor"] for h in history if h["to_state"] == "working"] == ["fenced"]
