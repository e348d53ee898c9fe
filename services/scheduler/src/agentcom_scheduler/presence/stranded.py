"""Stranded tasks: what the queue holds as assigned or working on an agent that is offline,
removed or no longer holds it goes back (the sweep's safety net)."""

import asyncio
import logging
from datetime import timedelta
from typing import Literal

from nats.aio.client import Client

from agentcom_common import clock, micro
from agentcom_common.contracts.agent import (
    AgentState,
)
from agentcom_common.contracts.task import (
    ListTasks,
    RequeueTask,
    TaskList,
    TaskState,
    TaskView,
)
from agentcom_common.errors import (
    AgentcomError,
    UnavailableError,
)
from agentcom_scheduler import ops, store

log = logging.getLogger("agentcom_scheduler.presence")  # one name for all of presence


async def requeue_stranded(
    s: ops.Scheduler, nc: Client, state: Literal["working", "assigned"], older_than: timedelta
) -> int:
    """Requeue tasks the queue has had in `state` for longer than `older_than` on an agent that
    is offline, removed, or no longer holds them; returns how many.

    The silence sweep hands a task back the moment its agent goes offline; this catches what it
    cannot see: an agent removed mid-task, a hand-back lost to a crash, a row that disagrees.
    An `assigned` one whose agent does not hold it was never sent (the scheduler or the queue
    was killed between the claim and the agent's move, or the claim's reply was lost): it goes
    back after the accept timeout, and only while still unaccepted (the fence: an agent that
    got it after all is told to drop it, see `answer_accepted`). Such tasks used to wait for the
    working timeout (10 min) in the faults test.
    """
    cutoff = clock.now() - older_than
    requeued = 0
    cursor: str | None = None
    while True:
        asked = ListTasks(state=TaskState(state), cursor=cursor, limit=500)
        page = await micro.call(nc, "queue", "list", asked, TaskList)
        old = [t for t in page.tasks if t.updated_at < cutoff]
        async with s.engine.connect() as conn:  # one checkout per page, not one per task
            rows = {
                t.id: await store.fetch(conn, t.assigned_to) if t.assigned_to else None for t in old
            }
        for task in old:
            agent_id, row = task.assigned_to, rows[task.id]
            online = row is not None and row.state != AgentState.OFFLINE.value
            if online and row is not None and row.task_id == task.id:
                continue
            where = "which is offline" if not online else "which does not hold it"
            back = RequeueTask(
                task_id=task.id,
                generation=task.generation,
                reason=f"{state} over {older_than} on agent {agent_id}, {where}",
                unaccepted_only=state == "assigned",
            )
            try:
                await micro.call(nc, "queue", "requeue", back, TaskView)
            except AgentcomError as exc:  # moved on meanwhile: nothing to do
                log.warning("stranded.refused", extra={"task_id": task.id, "error": exc.code})
                continue
            log.warning("task.stranded_requeued", extra={"task_id": task.id})
            requeued += 1
        cursor = page.next_cursor
        if not cursor:
            break
    return requeued


async def stranded_forever(
    s: ops.Scheduler,
    nc: Client,
    state: Literal["working", "assigned"],
    older_than: timedelta,
    every: timedelta,
) -> None:
    while True:
        try:
            await requeue_stranded(s, nc, state, older_than)
        except UnavailableError as exc:  # the queue is away: the next pass tries again
            log.warning("stranded.paused", extra={"error": exc.code})
        except Exception:  # the queue is away: the next pass tries again
            log.exception("stranded.failed")
        await asyncio.sleep(every.total_seconds())
