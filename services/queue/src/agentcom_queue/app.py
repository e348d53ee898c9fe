"""The queue service as a `ServiceSpec`: what `agentcom_common.service` needs to run it."""

import dataclasses
from functools import partial
from pathlib import Path
from typing import Final

from fastapi import FastAPI

from agentcom_common.service import ServiceSpec, create_app as build
from agentcom_common.settings import CommonSettings
from agentcom_queue import __version__, api, handlers, meters, sweep, tables
from agentcom_queue.settings import QueueSettings

SPEC: Final = ServiceSpec(
    name="queue",
    rpc="queue",
    description="Durable task queue: priorities, retries, dead letter, dependencies, repo registry.",
    version=__version__,
    metadata=tables.metadata,
    migrations=Path(__file__).parent / "migrations",
    routers=(api.tasks, api.repos),
    samplers=(meters.sampler,),
)


def create_app(settings: CommonSettings) -> FastAPI:
    queue_settings = (
        settings if isinstance(settings, QueueSettings) else QueueSettings(**settings.model_dump())
    )
    backoff = queue_settings.queue_retry_backoff
    deliveries = queue_settings.queue_max_deliveries
    max_task = queue_settings.queue_max_task_bytes
    starters = (
        partial(
            handlers.register,
            retry_backoff=backoff,
            max_deliveries=deliveries,
            max_task_bytes=max_task,
        ),
        partial(sweep.start, retry_backoff=backoff, every=queue_settings.queue_dependency_sweep),
    )
    app = build(dataclasses.replace(SPEC, starters=starters), settings)
    app.state.retry_backoff = backoff
    app.state.explain_timeout = queue_settings.queue_explain_timeout
    app.state.max_deliveries = deliveries
    app.state.max_task_bytes = max_task
    return app
