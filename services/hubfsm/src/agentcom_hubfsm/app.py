"""The hubfsm service as a `ServiceSpec`: what `agentcom_common.service` needs to run it."""

import asyncio
import dataclasses
from pathlib import Path
from typing import Final

from fastapi import FastAPI

from agentcom_common.service import Loops, Resources, ServiceSpec, create_app as build
from agentcom_common.settings import CommonSettings
from agentcom_hubfsm import __version__, api, handlers, tables
from agentcom_hubfsm.goals import ops
from agentcom_hubfsm.settings import HubSettings

SPEC: Final = ServiceSpec(
    name="hubfsm",
    rpc="hub",
    description="The hub's brain: goals backlog, hub state machine, decomposition, healing.",
    version=__version__,
    metadata=tables.metadata,
    migrations=Path(__file__).parent / "migrations",
    routers=(api.goals,),
)


def create_app(settings: CommonSettings) -> FastAPI:
    hub_settings = (
        settings if isinstance(settings, HubSettings) else HubSettings(**settings.model_dump())
    )
    wake = asyncio.Event()  # one per process: routes and RPCs set it, the driver waits on it

    async def start(res: Resources, _loops: Loops) -> None:
        await handlers.register(res, ops.Goals(res.engine, res.outbox, wake))

    app = build(dataclasses.replace(SPEC, starters=(start,)), hub_settings)
    app.state.wake = wake
    app.state.hub_settings = hub_settings
    return app
