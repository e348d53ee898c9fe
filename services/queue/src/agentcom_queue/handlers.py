"""NATS RPC of the queue: agentcom.rpc.queue.submit|claim|report|requeue|stats|list, and the
batch variants submit_batch|claim_batch|claim_agents|report_batch (one transaction for many
tasks).

Same ops as the HTTP API, through `micro.endpoint` (errors become Nats-Service-Error headers).
NATS callers are services and sidecars on the hub's own NATS account, so the actor is the
subject's caller as the payload names it.
"""

from datetime import timedelta
from functools import partial

from agentcom_common import micro
from agentcom_common.contracts.task import (
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
from agentcom_common.service import Loops, Resources
from agentcom_queue import direct, ops


async def register(
    res: Resources, loops: Loops, *, retry_backoff: timedelta, max_deliveries: int = 20
) -> None:
    claims = await direct.open_pool(res.settings)
    loops.spawn("claim-pool", direct.hold(claims))
    q = ops.Queue(res.engine, res.outbox, retry_backoff, claims, max_deliveries)

    async def submit(body: SubmitTask) -> TaskView:
        return await ops.submit_grouped(q, body, "nats")

    async def claim(body: ClaimTask) -> Claimed:
        task = await ops.claim(q, body.agent_id, list(body.capabilities), list(body.repos))
        return Claimed(task=task)

    async def requeue(body: RequeueTask) -> TaskView:
        return await ops.requeue(q, body, "nats")

    async def listing(body: ListTasks) -> TaskList:
        found, next_cursor = await ops.page(
            q,
            state=body.state,
            priority=None,
            goal_id=None,
            assigned_to=body.assigned_to,
            cursor=body.cursor,
            limit=body.limit,
        )
        return TaskList(tasks=found, next_cursor=next_cursor)

    async def stats(_body: StatsRequest) -> QueueStats:
        by_state, by_lane = await ops.stats(q)
        return QueueStats(by_state=by_state, queued_by_lane=by_lane)

    async def submit_batch(body: SubmitTasks) -> SubmittedTasks:
        return SubmittedTasks(tasks=await ops.submit_many(q, list(body.tasks), "nats"))

    async def claim_batch(body: ClaimTasks) -> ClaimedTasks:
        tasks = await ops.claim_many(
            q, body.agent_id, list(body.capabilities), list(body.repos), body.limit
        )
        return ClaimedTasks(tasks=tasks)

    async def claim_agents(body: ClaimForAgents) -> ClaimedTasks:
        tasks = await ops.claim_for_agents(
            q,
            list(body.agent_ids),
            list(body.capabilities),
            list(body.repos),
            list(body.exclude_tasks),
        )
        return ClaimedTasks(tasks=tasks)

    async def report_batch(body: ReportTasks) -> ReportedTasks:
        return ReportedTasks(results=await ops.report_many(q, list(body.reports)))

    group = res.group
    await group.add_endpoint(name="submit", handler=micro.endpoint(SubmitTask, submit))
    await group.add_endpoint(name="claim", handler=micro.endpoint(ClaimTask, claim))
    await group.add_endpoint(
        name="report", handler=micro.endpoint(ReportTask, partial(ops.report, q))
    )
    await group.add_endpoint(name="requeue", handler=micro.endpoint(RequeueTask, requeue))
    await group.add_endpoint(name="stats", handler=micro.endpoint(StatsRequest, stats))
    await group.add_endpoint(name="submit_batch", handler=micro.endpoint(SubmitTasks, submit_batch))
    await group.add_endpoint(name="claim_batch", handler=micro.endpoint(ClaimTasks, claim_batch))
    await group.add_endpoint(
        name="claim_agents", handler=micro.endpoint(ClaimForAgents, claim_agents)
    )
    await group.add_endpoint(name="report_batch", handler=micro.endpoint(ReportTasks, report_batch))

    await group.add_endpoint(name="list", handler=micro.endpoint(ListTasks, listing))
