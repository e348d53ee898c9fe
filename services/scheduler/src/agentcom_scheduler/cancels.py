"""Cancels: a task cancelled at the queue is stopped at the agent that holds it.

The queue's `task.cancelled` event (stream EVENTS) is followed by a durable consumer, so a
cancel that happens while the scheduler is down is acted on when it is back. For the agent that
holds that task at that generation, a `cancel` goes to its inbox (stream INBOX, durable: a
sidecar briefly away reads it when it is back), with `Nats-Msg-Id = cancel.<task>.<generation>`
so a redelivered event sends it once. The event is acked only after the inbox acked the cancel.

The agent stays `assigned`/`working` until its sidecar's `cancelled` report says the task's
processes are gone (`stopped`): only then is it idle and offered the next task, so new work
never lands on a sidecar still killing the old. A sidecar that never answers is caught by the
sweeps: offline after missed heartbeats, or past the assignment's deadline.
"""

import asyncio
import contextlib
import logging
from typing import Final

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from agentcom_common import messaging, subjects
from agentcom_common.contracts.agent import Cancel
from agentcom_common.contracts.task import TaskState, TaskTransition
from agentcom_scheduler import ops, store

log = logging.getLogger(__name__)

CONSUMER: Final = "scheduler-cancels"
SUBJECT: Final = subjects.TASK_CANCELLED
_HELD: Final = frozenset({TaskState.ASSIGNED, TaskState.WORKING})
"""A task cancelled from these states was held by an agent; from the others by nobody."""


async def on_cancelled(s: ops.Scheduler, js: JetStreamContext, event: TaskTransition) -> bool:
    """Send `cancel` to the agent holding the cancelled assignment; False if none holds it."""
    if event.from_state not in _HELD:
        return False
    async with s.engine.connect() as conn:
        agent_id = await store.holder(conn, event.task_id, event.generation)
    if agent_id is None:  # it already ended there (outcome, hand-back): nothing runs
        return False
    cancel = Cancel(task_id=event.task_id, generation=event.generation, reason="cancelled")
    await messaging.publish(
        js,
        subjects.agent_inbox(agent_id),
        cancel,
        msg_id=f"cancel.{event.task_id}.{event.generation}",
    )
    log.info("task.cancel_sent", extra={"agent_id": agent_id, "task_id": event.task_id})
    return True


async def follow(s: ops.Scheduler, js: JetStreamContext) -> None:
    """Consume `task.cancelled` events until cancelled; a failed one is redelivered."""
    sub = await js.pull_subscribe(
        SUBJECT,
        durable=CONSUMER,
        stream=subjects.EVENTS_STREAM,
        # first start: from now on (older cancels have long been swept); later starts resume
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.NEW),
    )
    try:
        while True:
            try:
                batch = await sub.fetch(64, timeout=1)
            except TimeoutError:
                continue
            except Exception:  # reconnecting or the stream is away: unacked events stay stored
                log.exception("cancels.fetch_failed")
                await asyncio.sleep(1)
                continue
            for msg in batch:
                await _handle(s, js, msg)
    finally:  # a pending fetch would hold the connection's drain at shutdown
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


async def _handle(s: ops.Scheduler, js: JetStreamContext, msg: Msg) -> None:
    try:
        event = TaskTransition.model_validate_json(msg.data)
    except ValidationError:
        log.warning("cancels.malformed", extra={"subject": msg.subject})
        await msg.term()  # never processable: refused once, not redelivered forever
        return
    try:
        await on_cancelled(s, js, event)
    except Exception:  # Postgres or NATS away: try again shortly
        log.exception("cancels.failed", extra={"task_id": event.task_id})
        await msg.nak(delay=1)
        return
    await msg.ack()
