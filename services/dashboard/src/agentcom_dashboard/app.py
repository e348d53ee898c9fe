"""The dashboard service as a `ServiceSpec`: what `agentcom_common.service` needs to run it."""

from pathlib import Path
from typing import Final

from fastapi import FastAPI

from agentcom_common.service import ServiceSpec, create_app as build
from agentcom_common.settings import CommonSettings
from agentcom_dashboard import __version__, tables

SPEC: Final = ServiceSpec(
    name="dashboard",
    rpc="dashboard",
    description="The web dashboard: live events, metrics, alert rules, push notifications.",
    version=__version__,
    metadata=tables.metadata,
    migrations=Path(__file__).parent / "migrations",
)


def create_app(settings: CommonSettings) -> FastAPI:
    return build(SPEC, settings)
