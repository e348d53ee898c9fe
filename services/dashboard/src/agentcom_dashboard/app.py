"""The dashboard service as a `ServiceSpec`: what `agentcom_common.service` needs to run it."""

from pathlib import Path
from typing import Final

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from agentcom_common.service import ServiceSpec, create_app as build
from agentcom_common.settings import CommonSettings
from agentcom_dashboard import __version__, api, live, pages, socket, submit, tables, ui
from agentcom_dashboard.settings import DashboardSettings

SPEC: Final = ServiceSpec(
    name="dashboard",
    rpc="dashboard",
    description="The web dashboard: live events, metrics, alert rules, push notifications.",
    version=__version__,
    metadata=tables.metadata,
    migrations=Path(__file__).parent / "migrations",
    settings=DashboardSettings,
    build=live.start,
    routers=(pages.router, ui.router, submit.router, api.router, api.scrape, socket.router),
    own_scrape=True,  # api.scrape: the snapshot's families, then the process's instruments
)


def create_app(settings: CommonSettings) -> FastAPI:
    app = build(SPEC, settings)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    return app
