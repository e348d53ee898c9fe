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
from agentcom_common.contracts.task import ClaimForAgents, RequeueTask
from agentcom_common.errors import AgentcomError
from agentcom_scheduler import batch, ops, queue_client, store

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


CLAIMS_AT_ONCE = 64
"""Idle agents of one profile offered work in one queue round trip and one transaction."""


async def match_once(
    s: ops.Scheduler, nc: Client, js: JetStreamContext, execution_timeout: timedelta
) -> int:
    """Offer work to idle agents; returns how many tasks were assigned.

    Agents alike (same capabilities and repos) get the same answer from the queue, so work is
    offered profile by profile: up to CLAIMS_AT_ONCE of its idle agents, longest idle first, in
    one `claim_agents` call (the best task to the longest idle), one transaction for all their
    moves, then the assignments published side by side; again until the queue runs dry for
    that profile. The cost follows the number of profiles and assignments, not of idle agents.
    """
    async with s.engine.connect() as conn:
        profiles = await store.idle_profiles(conn)
    assigned = 0
    for profile in profiles:
        while True:
            async with s.engine.connect() as conn:
                chunk = await store.idle_of(conn, profile, CLAIMS_AT_ONCE)
            if not chunk:
                break
            claimed, sent = await _offer(s, nc, js, profile, chunk, execution_timeout)
            assigned += sent
            if claimed < len(chunk) or len(chunk) < CLAIMS_AT_ONCE:
                break
    return assigned


async def _offer(
    s: ops.Scheduler,
    nc: Client,
    js: JetStreamContext,
    profile: store.Profile,
    chunk: list[store.AgentRow],
    execution_timeout: timedelta,
) -> tuple[int, int]:
    """Claim one task each for idle agents alike and send the assignments; returns (tasks
    claimed, assignments sent). A task whose agent left meanwhile goes straight back."""
    capabilities, repos = profile
    claim = ClaimForAgents(agent_ids=[a.id for a in chunk], capabilities=capabilities, repos=repos)
    tasks: list[dict[str, Any]] = (await queue_client.call(nc, "claim_agents", claim))["tasks"]
    if not tasks:
        return 0, 0
    now = clock.now()
    moves = [
        batch.Move(
            task["assigned_to"],
            AgentState.IDLE,
            AgentState.ASSIGNED,
            f"task {task['id']} generation {task['generation']}",
            "assigned",
            (task["id"], task["generation"], now, _deadline(task, execution_timeout)),
        )
        for task in tasks
    ]
    async with s.engine.begin() as conn:
        moved = await batch.transition_many(s, conn, moves)
    for task in tasks:
        if task["assigned_to"] not in moved:  # it went offline meanwhile: give it straight back
            back = RequeueTask(
                task_id=task["id"], generation=task["generation"], reason="agent left"
            )
            await queue_client.call(nc, "requeue", back)
    sent = [task for task in tasks if task["assigned_to"] in moved]
    await asyncio.gather(*(_send(js, task) for task in sent))
    return len(tasks), len(sent)


async def _send(js: JetStreamContext, task: dict[str, Any]) -> None:
    agent_id = task["assigned_to"]
    await messaging.publish(
        js,
        subjects.agent_inbox(agent_id),
        Assign(task=task, generation=task["generation"]),
        msg_id=f"assign.{task['id']}.{task['generation']}",
    )
    log.info("task.assigned", extra={"agent_id": agent_id, "task_id": task["id"]})


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
