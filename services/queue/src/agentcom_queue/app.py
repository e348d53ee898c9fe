"""The queue service as a `ServiceSpec`: what `agentcom_common.service` needs to run it."""

from pathlib import Path
from typing import Final

from fastapi import FastAPI

from agentcom_common.service import ServiceSpec, create_app as build
from agentcom_common.settings import CommonSettings
from agentcom_queue import __version__, tables

SPEC: Final = ServiceSpec(
    name="queue",
    rpc="queue",
    description="Durable task queue: priorities, retries, dead letter, dependencies, repo registry.",
    version=__version__,
    metadata=tables.metadata,
    migrations=Path(__file__).parent / "migrations",
)


def create_app(settings: CommonSettings) -> FastAPI:
    return build(SPEC, settings)
