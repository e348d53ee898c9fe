"""The scheduler service as a `ServiceSpec`: what `agentcom_common.service` needs to run it."""

from functools import partial
from pathlib import Path
from typing import Final

from fastapi import FastAPI

from agentcom_common.service import ServiceSpec, create_app as build
from agentcom_common.settings import CommonSettings
from agentcom_scheduler import __version__, api, loops, meters, presence, tables
from agentcom_scheduler.settings import SchedulerSettings

SPEC: Final = ServiceSpec(
    name="scheduler",
    rpc="scheduler",
    description="Agents, credentials, presence, per-agent state machines and task matching.",
    version=__version__,
    metadata=tables.metadata,
    migrations=Path(__file__).parent / "migrations",
    settings=SchedulerSettings,
    build=loops.start,
    routers=(api.router, api.agents, api.stats),
    samplers=(partial(meters.sampler, lag=presence.report_lag),),
)


def create_app(settings: CommonSettings) -> FastAPI:
    return build(SPEC, settings)
