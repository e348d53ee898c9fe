"""Matching: idle agents claim tasks from the queue; assignments go to the agent's inbox.

Events wake it (a task became claimable, an agent became idle); a sweep every interval makes
sure nothing waits on a lost event. If the process dies after a claim but before the inbox
publish, the queue holds an assignment nobody was told about; the accept timeout (issue #5,
next step) hands it back.
"""

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from agentcom_common import clock, messaging, subjects
from agentcom_common.contracts.agent import AgentState, Assign
from agentcom_common.contracts.task import ClaimTask, RequeueTask
from agentcom_common.errors import AgentcomError
from agentcom_scheduler import ops, presence, queue_client, store

log = logging.getLogger(__name__)

WAKE_SUBJECTS = (
    "agentcom.evt.task.submitted",
    "agentcom.evt.task.released",
    "agentcom.evt.task.requeued",
    "agentcom.evt.task.retried",
    "agentcom.evt.agent.online",
    "agentcom.evt.agent.idle",
)


def _deadline(task: dict[str, Any], execution_timeout: timedelta) -> datetime:
    """The task's own `complete_by` if it has one, else the execution timeout from now."""
    if task.get("complete_by"):
        return datetime.fromisoformat(task["complete_by"])
    return clock.now() + execution_timeout


CLAIMS_AT_ONCE = 8
"""Idle agents offered work side by side in one pass (claims are RPCs: mostly waiting)."""


async def match_once(
    s: ops.Scheduler, nc: Client, js: JetStreamContext, execution_timeout: timedelta
) -> int:
    """Offer work to idle agents; returns how many tasks were assigned.

    Agents alike (same capabilities and repos) get the same answer from the queue, so work is
    offered profile by profile, longest-idle agent first, a few side by side, until the queue
    has nothing for that profile: the cost follows the number of profiles and assignments, not
    the number of idle agents.
    """
    async with s.engine.connect() as conn:
        profiles = await store.idle_profiles(conn)
    assigned = 0
    for profile in profiles:
        while True:
            async with s.engine.connect() as conn:
                chunk = await store.idle_of(conn, profile, CLAIMS_AT_ONCE)
            got = await asyncio.gather(
                *(_offer(s, nc, js, agent, execution_timeout) for agent in chunk)
            )
            assigned += sum(1 for g in got if g)
            if len(chunk) < CLAIMS_AT_ONCE or None in got or not any(got):
                break
    return assigned


async def _offer(
    s: ops.Scheduler,
    nc: Client,
    js: JetStreamContext,
    agent: store.AgentRow,
    execution_timeout: timedelta,
) -> bool | None:
    """Claim for one idle agent and send the assignment: True when sent, None when the queue
    has nothing for it, False when it left meanwhile."""
    claim = ClaimTask(
        agent_id=agent.id, capabilities=list(agent.capabilities), repos=list(agent.repos)
    )
    task = (await queue_client.call(nc, "claim", claim))["task"]
    if task is None:
        return None
    async with s.engine.begin() as conn:
        moved = await presence.transition_if(
            s,
            conn,
            agent.id,
            AgentState.IDLE,
            AgentState.ASSIGNED,
            f"task {task['id']} generation {task['generation']}",
            "assigned",
            {
                "task_id": task["id"],
                "generation": task["generation"],
                "assigned_at": clock.now(),
                "deadline": _deadline(task, execution_timeout),
            },
        )
    if not moved:  # it went offline meanwhile: give the task straight back
        back = RequeueTask(task_id=task["id"], generation=task["generation"], reason="agent left")
        await queue_client.call(nc, "requeue", back)
        return False
    await messaging.publish(
        js,
        subjects.agent_inbox(agent.id),
        Assign(task=task, generation=task["generation"]),
        msg_id=f"assign.{task['id']}.{task['generation']}",
    )
    log.info("task.assigned", extra={"agent_id": agent.id, "task_id": task["id"]})
    return True


async def match_forever(
    s: ops.Scheduler, nc: Client, js: JetStreamContext, every: timedelta, execution: timedelta
) -> None:
    wake = asyncio.Event()

    async def on_event(_msg: Msg) -> None:
        wake.set()

    for subject in WAKE_SUBJECTS:
        await nc.subscribe(subject, cb=on_event)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
    while True:
        wake.clear()
        try:
            await match_once(s, nc, js, execution)
        except AgentcomError as exc:  # the queue is away: the next pass retries
            log.warning("matching.paused", extra={"error": exc.code})
        except Exception:  # NATS or Postgres hiccup: an unsent assignment times out and returns
            log.exception("matching.failed")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(every.total_seconds()):
                await wake.wait()
