"""The llm-registry service as a `ServiceSpec`: what `agentcom_common.service` needs to run it."""

import dataclasses
from pathlib import Path
from typing import Final

from fastapi import FastAPI

from agentcom_common.service import ServiceSpec, create_app as build
from agentcom_common.settings import CommonSettings
from agentcom_llm_registry import __version__, handlers, tables
from agentcom_llm_registry.api import gateway as gateway_api, registry as registry_api
from agentcom_llm_registry.ops import Llm
from agentcom_llm_registry.settings import LlmSettings

SPEC: Final = ServiceSpec(
    name="llm-registry",
    rpc="llm",
    description="LLM endpoints, health, model discovery, routing, chat gateway and cost ledger.",
    version=__version__,
    metadata=tables.metadata,
    migrations=Path(__file__).parent / "migrations",
    routers=(registry_api.routes, gateway_api.routes),
    middleware=(gateway_api.FastPath,),
)


def create_app(settings: CommonSettings) -> FastAPI:
    llm_settings = (
        settings if isinstance(settings, LlmSettings) else LlmSettings(**settings.model_dump())
    )
    app: FastAPI | None = None

    def publish(s: Llm) -> None:
        assert app is not None
        app.state.llm = s

    spec = dataclasses.replace(SPEC, starters=(handlers.starter(llm_settings, publish),))
    app = build(spec, llm_settings)
    return app
