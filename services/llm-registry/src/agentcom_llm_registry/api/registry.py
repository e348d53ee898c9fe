"""HTTP: the registry API (/api/llm/...): endpoints, dry-run routing, metrics and costs."""

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, status

from agentcom_common import clock
from agentcom_common.contracts.llm import Routing
from agentcom_common.openapi import errors
from agentcom_common.web import Admin, Reader, Viewer
from agentcom_llm_registry import health, heartbeats
from agentcom_llm_registry.api import L
from agentcom_llm_registry.gateway import resolve
from agentcom_llm_registry.views import (
    AddEndpoint,
    CostRow,
    Costs,
    EndpointView,
)

routes = APIRouter(prefix="/api/llm", tags=["llm registry"])


@routes.get("/endpoints")
async def list_endpoints(s: L, _who: Viewer) -> list[EndpointView]:
    """List endpoints with health, models (configured + discovered), warm models, metrics."""
    return [s.view(e) for e in s.registry.endpoints.values()]


@routes.post("/endpoints", status_code=status.HTTP_201_CREATED, responses=errors(409))
async def add_endpoint(body: AddEndpoint, s: L, _who: Admin) -> EndpointView:
    """Register an endpoint by hand. The API key is stored and never shown again.

    Errors: 422 `invalid_field`, 409 `endpoint_exists`.
    """
    return await s.add(body)


@routes.get("/endpoints/{endpoint_id}", responses=errors(404))
async def get_endpoint(endpoint_id: str, s: L, _who: Viewer) -> EndpointView:
    """One endpoint with health, models, warm models, host resources and metrics.

    Errors: 404 `endpoint_not_found`.
    """
    return s.view(s.find(endpoint_id))


@routes.delete(
    "/endpoints/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404)
)
async def remove_endpoint(endpoint_id: str, s: L, _who: Admin) -> None:
    """Remove an endpoint. Errors: 404 `endpoint_not_found`."""
    await s.remove(endpoint_id)


@routes.post("/endpoints/{endpoint_id}/share", responses=errors(404, 409))
async def share_endpoint(endpoint_id: str, s: L, _who: Admin) -> EndpointView:
    """Let every caller use an endpoint learnt from an agent's heartbeat (until then it serves
    that agent alone). From now on it is probed, and it serves only the models it lists itself.
    A heartbeat that moves it to another URL makes it the agent's own again.

    Errors: 404 `endpoint_not_found`, 409 `not_learnt` (added by hand: shared already).
    """
    return s.view(await heartbeats.share(s, endpoint_id))


@routes.post("/endpoints/{endpoint_id}/check", responses=errors(404))
async def check_endpoint(endpoint_id: str, s: L, _who: Admin) -> EndpointView:
    """Run a health check and model discovery now. Errors: 404 `endpoint_not_found`."""
    endpoint = s.find(endpoint_id)
    await health.check(s, endpoint)
    return s.view(endpoint)


@routes.get("/route")
async def dry_run(
    s: L,
    who: Reader,
    tier: Literal["trivial", "standard", "complex"] | None = None,
    model: Annotated[str | None, Query(max_length=200)] = None,
) -> Routing:
    """Where a call would go now, and why, without calling anything (candidates in order)."""
    tier_name, explicit = resolve(model, tier)
    found, skipped = s.registry.candidates(tier_name, explicit, who.agent_id)
    return s.registry.explain(tier_name, explicit, [(found[0], "chosen")], found[1:], skipped)


@routes.get("/metrics")
async def metrics(s: L, _who: Viewer) -> dict[str, Any]:
    """Per-endpoint counters since start: calls, errors, tokens, in-flight, p50 latency."""
    return {e.id: s.view(e).metrics.model_dump() for e in s.registry.endpoints.values()}


@routes.get("/costs")
async def costs(
    s: L,
    _who: Viewer,
    hours: Annotated[float, Query(gt=0, le=24 * 366)] = 24,
    group_by: Literal["model", "endpoint_id", "caller", "caller_class", "tier"] = "model",
) -> Costs:
    """Calls, failures, tokens, time and USD over the last `hours`, grouped; plus budget use."""
    since = clock.now() - timedelta(hours=hours)
    rows = await s.ledger.costs(since, group_by)
    return Costs(
        since=since.isoformat(),
        group_by=group_by,
        rows=[CostRow.model_validate(dict(r._mapping)) for r in rows],
        budgets=await s.budgets.status(),
    )
