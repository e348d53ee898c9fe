"""The queue service as a `ServiceSpec`: what `agentcom_common.service` needs to run it."""

import logging
from pathlib import Path
from typing import Final

from fastapi import FastAPI

from agentcom_common.service import Loops, Resources, ServiceSpec, create_app as build_app
from agentcom_common.settings import CommonSettings
from agentcom_queue import __version__, api, direct, handlers, limits, meters, ops, sweep, tables
from agentcom_queue.settings import QueueSettings

log = logging.getLogger(__name__)


async def build(settings: QueueSettings, res: Resources, loops: Loops) -> ops.Own:
    """The queue's own state: one `ops.Queue` on the claim pool, for routes and handlers alike."""
    claims = await direct.open_pool(res.settings)
    loops.spawn("claim-pool", direct.hold(claims))
    wanted = settings.queue_max_task_bytes
    task_limit = limits.effective(wanted, res.nc.max_payload)
    if task_limit < wanted:
        log.warning(
            "queue.max_task_bytes_lowered",
            extra={"setting": wanted, "max_payload": res.nc.max_payload, "limit": task_limit},
        )
    q = ops.Queue(
        res.engine,
        res.outbox,
        res.relay,
        settings.queue_retry_backoff,
        claims,
        settings.queue_max_deliveries,
    )
    own = ops.Own(q, ops.SubmitGroup(), task_limit, settings.queue_explain_timeout)
    await handlers.register(res, own)
    sweep.start(loops, q, settings.queue_dependency_sweep)
    return own


SPEC: Final = ServiceSpec(
    name="queue",
    rpc="queue",
    description="Durable task queue: priorities, retries, dead letter, dependencies, repo registry.",
    version=__version__,
    metadata=tables.metadata,
    migrations=Path(__file__).parent / "migrations",
    settings=QueueSettings,
    build=build,
    routers=(api.tasks, api.repos),
    samplers=(meters.sampler,),
)


def create_app(settings: CommonSettings) -> FastAPI:
    return build_app(SPEC, settings)
