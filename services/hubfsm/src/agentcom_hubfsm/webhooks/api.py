"""HTTP API of GitHub's webhooks: POST /api/webhooks/github (GitHub's deliveries, signed, no
bearer token) and GET /api/webhooks/deliveries (what came, what was done and why)."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from agentcom_common import service
from agentcom_common.contracts.github import DeliveryPage, WebhookAnswer
from agentcom_common.openapi import Problem
from agentcom_common.web import Viewer
from agentcom_hubfsm.own import Own
from agentcom_hubfsm.webhooks import ops
from agentcom_hubfsm.webhooks.hooks import Hooks

CURSOR = r"^[0-9]{1,18}$"


def hooks_of(request: Request) -> Hooks:
    return service.own(request, Own).hooks


H = Annotated[Hooks, Depends(hooks_of)]
webhooks = APIRouter(prefix="/api/webhooks", tags=["webhooks"])


def _problem(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description}


REFUSALS: dict[int | str, dict[str, Any]] = {
    401: _problem("`signature_missing`: no `X-Hub-Signature-256` header"),
    403: _problem(
        "`signature_mismatch` (not the body's HMAC under the repo's secret) or "
        "`webhook_secret_unset` (no secret configured for the repo)"
    ),
    409: _problem("`delivery_replayed`: this `X-GitHub-Delivery` was acted on before"),
    413: _problem("`webhook_too_large` (AGENTCOM_HUB_GITHUB_WEBHOOK_MAX_BODY)"),
    422: _problem(
        "`invalid_field`: `X-GitHub-Delivery` or `X-GitHub-Event` missing, or the body is "
        "not a JSON object (`field` says which)"
    ),
    503: _problem("`webhook_failed`: acting on it failed half-way; redeliver it"),
}


@webhooks.post(
    "/github",
    responses=REFUSALS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def github_webhook(request: Request, h: H) -> WebhookAnswer:
    """Take one GitHub webhook delivery (GitHub's `X-GitHub-Event`, `X-GitHub-Delivery` and
    `X-Hub-Signature-256` headers, the payload as JSON).

    Every delivery is recorded, refused ones too; one is acted on once. Errors: 401
    `signature_missing`, 403 `signature_mismatch` / `webhook_secret_unset`, 409
    `delivery_replayed`, 413 `webhook_too_large`, 422 `invalid_field`, 503 `webhook_failed`.
    """
    return await ops.receive(h, request.headers, await request.body())


@webhooks.get("/deliveries")
async def list_deliveries(
    h: H,
    _who: Viewer,
    repo: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    cursor: Annotated[str | None, Query(pattern=CURSOR)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DeliveryPage:
    """The deliveries GitHub sent, newest first: what came, what the hub did and why; pass
    `next_cursor` back as `cursor` for the next page."""
    return await ops.deliveries(h, cursor=cursor, limit=limit, repo=repo)
