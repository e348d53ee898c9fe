"""The dashboard service as a `ServiceSpec`: what `agentcom_common.service` needs to run it."""

import dataclasses
from pathlib import Path
from typing import Final

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from agentcom_common.service import Loops, Resources, ServiceSpec, create_app as build
from agentcom_common.settings import CommonSettings
from agentcom_dashboard import __version__, api, live, pages, socket, submit, tables, ui
from agentcom_dashboard.access import LiveRef
from agentcom_dashboard.settings import DashboardSettings

SPEC: Final = ServiceSpec(
    name="dashboard",
    rpc="dashboard",
    description="The web dashboard: live events, metrics, alert rules, push notifications.",
    version=__version__,
    metadata=tables.metadata,
    migrations=Path(__file__).parent / "migrations",
    routers=(pages.router, ui.router, submit.router, api.router, api.scrape, socket.router),
    own_scrape=True,  # api.scrape: the snapshot's families, then the process's instruments
)


def create_app(settings: CommonSettings) -> FastAPI:
    own = (
        settings
        if isinstance(settings, DashboardSettings)
        else DashboardSettings.model_validate(settings.model_dump())
    )
    ref = LiveRef()

    async def start(res: Resources, loops: Loops) -> None:
        ref.live = await live.start(res, loops, settings=own)

    app = build(dataclasses.replace(SPEC, starters=(start,)), own)
    app.state.live_ref = ref
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    return app
