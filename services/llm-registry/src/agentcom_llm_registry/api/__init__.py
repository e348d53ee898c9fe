"""HTTP: the registry API (`api.registry`, /api/llm/...) and the gateway (`api.gateway`, Ollama
/api/* and OpenAI /v1/*), two jobs in two modules; what both need (the service's `Llm`) is here.
"""

from typing import Annotated

from fastapi import Depends, Request

from agentcom_llm_registry.ops import Llm


def llm(request: Request) -> Llm:
    return request.app.state.llm


L = Annotated[Llm, Depends(llm)]
