"""NATS RPC of the queue: agentcom.rpc.queue.submit|claim|report|requeue|cancel|stats|list, and the
batch variants submit_batch|claim_batch|claim_agents|report_batch (one transaction for many
tasks).

Same ops as the HTTP API, through `micro.endpoint` (errors become Nats-Service-Error headers).
NATS callers are services and sidecars on the hub's own NATS account, so the actor is the
subject's caller as the payload names it.

Every reply must fit NATS's max_payload (`limits`): task and result sizes are bounded at
submit and report, a claim batch or list page is cut to what fits, and claimed tasks whose
reply is cut off or cannot be sent go straight back to the queue (never stranded `assigned`).
"""

import logging

from agentcom_common import micro
from agentcom_common.contracts.task import (
    CancelTask,
    Claimed,
    ClaimedTasks,
    ClaimForAgents,
    ClaimTask,
    ClaimTasks,
    ListTasks,
    QueueStats,
    ReportedTasks,
    ReportTask,
    ReportTasks,
    RequeueTask,
    StatsRequest,
    SubmitTask,
    SubmitTasks,
    SubmittedTasks,
    TaskList,
    TaskView,
)
from agentcom_common.service import Resources
from agentcom_queue import limits, ops

log = logging.getLogger(__name__)
_UNDELIVERED = "the claim reply could not be delivered"


class Rpc:
    """The endpoints' bodies: limits at the edge, then the op."""

    def __init__(self, own: ops.Own, budget: int) -> None:
        self.own, self.q, self.budget, self.task_limit = own, own.q, budget, own.task_limit

    async def hand_back(self, tasks: list[TaskView], reason: str) -> None:
        for task in tasks:
            back = RequeueTask(task_id=task.id, generation=task.generation, reason=reason)
            await ops.requeue(self.q, back, "queue")

    async def submit(self, body: SubmitTask) -> TaskView:
        limits.check_task(body, self.task_limit)
        return await self.own.submit(body, "nats")

    async def submit_batch(self, body: SubmitTasks) -> SubmittedTasks:
        limits.check_tasks(list(body.tasks), self.task_limit)
        return SubmittedTasks(tasks=await ops.submit_many(self.q, list(body.tasks), "nats"))

    async def fail_oversized(self, tasks: list[TaskView]) -> None:
        """Fail tasks no reply can carry: the retries end in the dead letter, where a person
        sees why, instead of the task blocking its lane for ever."""
        for task in tasks:
            failed = ReportTask(
                task_id=task.id,
                agent_id=task.assigned_to or "queue",
                generation=task.generation,
                outcome="failed",
                error=f"task is {len(task.model_dump_json())} bytes as JSON, more than one "
                f"NATS message carries ({self.budget} bytes max_payload); it cannot be delivered",
            )
            await ops.report(self.q, failed)
            log.error("task.undeliverable", extra={"task_id": task.id})

    async def claim(self, body: ClaimTask) -> Claimed:
        task = await ops.claim(self.q, body.agent_id, list(body.capabilities), list(body.repos))
        if task is None:
            return Claimed(task=None)
        _, _, oversized = limits.fit([task], self.budget)
        await self.fail_oversized(oversized)
        return Claimed(task=None if oversized else task)

    async def claim_undelivered(self, reply: Claimed) -> None:
        await self.hand_back([reply.task] if reply.task else [], _UNDELIVERED)

    async def claimed_undelivered(self, reply: ClaimedTasks) -> None:
        await self.hand_back(list(reply.tasks), _UNDELIVERED)

    async def _fitted(self, tasks: list[TaskView]) -> ClaimedTasks:
        kept, rest, oversized = limits.fit(tasks, self.budget)
        await self.fail_oversized(oversized)
        await self.hand_back(rest, "did not fit in the claim reply (NATS max_payload)")
        return ClaimedTasks(tasks=kept)

    async def claim_batch(self, body: ClaimTasks) -> ClaimedTasks:
        tasks = await ops.claim_many(
            self.q, body.agent_id, list(body.capabilities), list(body.repos), body.limit
        )
        return await self._fitted(tasks)

    async def claim_agents(self, body: ClaimForAgents) -> ClaimedTasks:
        tasks = await ops.claim_for_agents(
            self.q,
            list(body.agent_ids),
            list(body.capabilities),
            list(body.repos),
            list(body.exclude_tasks),
        )
        return await self._fitted(tasks)

    async def report(self, body: ReportTask) -> TaskView:
        limits.check_result(body, self.task_limit)
        return await ops.report(self.q, body)

    async def report_batch(self, body: ReportTasks) -> ReportedTasks:
        for index, one in enumerate(body.reports):
            limits.check_result(one, self.task_limit, f"reports.{index}.result")
        return ReportedTasks(results=await ops.report_many(self.q, list(body.reports)))

    async def requeue(self, body: RequeueTask) -> TaskView:
        return await ops.requeue(self.q, body, "nats")

    async def cancel(self, body: CancelTask) -> TaskView:
        return await ops.cancel(self.q, body.task_id, "nats")

    async def listing(self, body: ListTasks) -> TaskList:
        limit = body.limit
        while True:  # a page too large for one reply is asked again smaller; one task fits
            found, next_cursor = await ops.page(
                self.q,
                state=body.state,
                priority=None,
                goal_id=body.goal_id,
                assigned_to=body.assigned_to,
                cursor=body.cursor,
                limit=limit,
            )
            kept, rest, oversized = limits.fit(found, self.budget)
            if not rest and not oversized:
                return TaskList(tasks=found, next_cursor=next_cursor)
            if not kept:  # the page opens with a task stored before the limits: step over it
                log.error("task.unlistable", extra={"task_id": found[0].id})
                if limit > 1:
                    limit = 1
                    continue
                return TaskList(tasks=[], next_cursor=next_cursor)
            limit = len(kept)

    async def stats(self, _body: StatsRequest) -> QueueStats:
        by_state, by_lane = await ops.stats(self.q)
        return QueueStats(by_state=by_state, queued_by_lane=by_lane)


async def register(res: Resources, own: ops.Own) -> None:
    """The queue's NATS endpoints, on the app's own `ops.Own` (the routes' too)."""
    rpc = Rpc(own, res.nc.max_payload)
    depth = res.settings.json_max_depth
    group = res.group
    for name, handler in (
        ("submit", micro.endpoint(SubmitTask, rpc.submit, max_depth=depth)),
        (
            "claim",
            micro.endpoint(
                ClaimTask, rpc.claim, max_depth=depth, undelivered=rpc.claim_undelivered
            ),
        ),
        ("report", micro.endpoint(ReportTask, rpc.report, max_depth=depth)),
        ("requeue", micro.endpoint(RequeueTask, rpc.requeue, max_depth=depth)),
        ("stats", micro.endpoint(StatsRequest, rpc.stats, max_depth=depth)),
        ("submit_batch", micro.endpoint(SubmitTasks, rpc.submit_batch, max_depth=depth)),
        (
            "claim_batch",
            micro.endpoint(
                ClaimTasks, rpc.claim_batch, max_depth=depth, undelivered=rpc.claimed_undelivered
            ),
        ),
        (
            "claim_agents",
            micro.endpoint(
                ClaimForAgents,
                rpc.claim_agents,
                max_depth=depth,
                undelivered=rpc.claimed_undelivered,
            ),
        ),
        ("report_batch", micro.endpoint(ReportTasks, rpc.report_batch, max_depth=depth)),
        ("list", micro.endpoint(ListTasks, rpc.listing, max_depth=depth)),
        ("cancel", micro.endpoint(CancelTask, rpc.cancel, max_depth=depth)),
    ):
        await group.add_endpoint(name=name, handler=handler)
