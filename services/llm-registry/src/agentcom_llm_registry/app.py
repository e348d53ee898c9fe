"""The llm-registry service as a `ServiceSpec`: what `agentcom_common.service` needs to run it."""

from pathlib import Path
from typing import Final

from fastapi import FastAPI

from agentcom_common.service import ServiceSpec, create_app as build
from agentcom_common.settings import CommonSettings
from agentcom_llm_registry import __version__, handlers, tables
from agentcom_llm_registry.api import gateway as gateway_api, registry as registry_api
from agentcom_llm_registry.settings import LlmSettings

SPEC: Final = ServiceSpec(
    name="llm-registry",
    rpc="llm",
    description="LLM endpoints, health, model discovery, routing, chat gateway and cost ledger.",
    version=__version__,
    metadata=tables.metadata,
    migrations=Path(__file__).parent / "migrations",
    settings=LlmSettings,
    build=handlers.start,
    routers=(registry_api.routes, gateway_api.routes),
    middleware=(gateway_api.FastPath,),
)


def create_app(settings: CommonSettings) -> FastAPI:
    return build(SPEC, settings)
