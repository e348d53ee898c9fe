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

import functools
import logging
from typing import Final

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from agentcom_common import consumer, messaging, subjects
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


async def follow(s: ops.Scheduler, js: JetStreamContext, policy: consumer.Policy) -> None:
    """Consume `task.cancelled` events until cancelled, settled by the shared consumer policy:
    a malformed one is refused and recorded, a failed one redelivered with a growing delay.
    A new durable starts from now on (older cancels have long been swept); later starts
    resume where it was."""
    await consumer.consume(
        js,
        subjects.EVENTS_STREAM,
        SUBJECT,
        CONSUMER,
        policy,
        functools.partial(_handle, s, js),
        batch=64,
        new_only=True,
    )


async def _handle(s: ops.Scheduler, js: JetStreamContext, msg: Msg) -> None:
    # a ValidationError is an input error: refused once, not redelivered forever
    await on_cancelled(s, js, TaskTransition.model_validate_json(msg.data))
