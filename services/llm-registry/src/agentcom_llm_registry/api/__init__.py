"""HTTP: the registry API (`api.registry`, /api/llm/...) and the gateway (`api.gateway`, Ollama
/api/* and OpenAI /v1/*), two jobs in two modules; what both need (the service's `Llm`) is here.
"""

from typing import Annotated

from fastapi import Depends, Request

from agentcom_common import service
from agentcom_llm_registry.ops import Llm


def llm(request: Request) -> Llm:
    return service.own(request, Llm)  # the app's own, built by `handlers.start`


L = Annotated[Llm, Depends(llm)]
