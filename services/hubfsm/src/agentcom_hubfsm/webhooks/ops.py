"""Receive one GitHub webhook delivery: check it, record it, act on it once.

Order of the checks, each refusal recorded with its reason before it is answered:
size (413 `webhook_too_large`), signature present (401 `signature_missing`), a secret for the
repo (403 `webhook_secret_unset`), signature right (403 `signature_mismatch`), the delivery's
id and event named (422 naming the header), a JSON object (422 `body`), and the delivery not
seen before (409 `delivery_replayed`). A delivery that passes is claimed by its id in Postgres
first (a unique index: two replicas given the same one act once), then acted on.

If acting fails half-way (the queue or Postgres away), the claim is released and GitHub is
answered 503: a redelivery of the same id is then accepted and its steps repeat safely (a
follow-up task has a `client_key`, a round is keyed by its cause, a goal by its issue).
"""

import json
import logging
from collections.abc import Mapping
from typing import Any, cast

from agentcom_common.contracts.github import DeliveryPage, WebhookAnswer
from agentcom_common.errors import (
    AgentcomError,
    ConflictError,
    ForbiddenError,
    InvalidError,
    TooLargeError,
    UnauthorizedError,
    UnavailableError,
)
from agentcom_hubfsm.webhooks import events, signature, store
from agentcom_hubfsm.webhooks.hooks import Hooks

log = logging.getLogger(__name__)


async def _refuse(h: Hooks, d: store.Delivery, error: AgentcomError) -> AgentcomError:
    async with h.engine.begin() as conn:
        await store.refuse(conn, d, error.status, f"{error.code}: {error.detail}")
    log.warning(
        "webhook.refused", extra={"delivery": d.delivery, "event": d.event, "error": error.code}
    )
    return error


def _payload(body: bytes) -> dict[str, Any] | None:
    try:
        parsed: object = json.loads(body)
    except ValueError:
        return None
    return cast("dict[str, Any]", parsed) if isinstance(parsed, dict) else None


def _checked(h: Hooks, d: store.Delivery, headers: Mapping[str, str], body: bytes) -> None:
    """Raise the first refusal that applies (see the module's docstring)."""
    s = h.settings
    if len(body) > s.hub_github_webhook_max_body:
        raise TooLargeError(
            f"the body has {len(body)} bytes; at most {s.hub_github_webhook_max_body} "
            "(AGENTCOM_HUB_GITHUB_WEBHOOK_MAX_BODY)",
            code="webhook_too_large",
        )
    given = headers.get("x-hub-signature-256")
    if not given:
        raise UnauthorizedError(
            "X-Hub-Signature-256 is missing: set the hook's secret on GitHub",
            code="signature_missing",
        )
    secret = signature.secret_for(d.repo, s.hub_github_webhook_secret, s.hub_github_webhook_secrets)
    if secret is None:
        raise ForbiddenError(
            "no webhook secret is set for this repo (AGENTCOM_HUB_GITHUB_WEBHOOK_SECRET or "
            "AGENTCOM_HUB_GITHUB_WEBHOOK_SECRETS)",
            code="webhook_secret_unset",
        )
    if not signature.matches(secret, body, given):
        raise ForbiddenError(
            "X-Hub-Signature-256 does not match the body under this repo's secret",
            code="signature_mismatch",
        )
    for header, value in (("X-GitHub-Delivery", d.delivery), ("X-GitHub-Event", d.event)):
        if not value or len(value) > 100:
            raise InvalidError(f"{header} must name the delivery (1-100 characters)", field=header)


async def receive(h: Hooks, headers: Mapping[str, str], body: bytes) -> WebhookAnswer:
    """Check, record and act on one delivery; raises the recorded refusal."""
    d = store.Delivery(headers.get("x-github-delivery"), headers.get("x-github-event"))
    payload = _payload(body) if len(body) <= h.settings.hub_github_webhook_max_body else None
    if payload is not None:
        d.action = _text(payload.get("action"))
        repository: object = payload.get("repository")
        if isinstance(repository, dict):
            d.repo = _text(cast("dict[str, Any]", repository).get("full_name"))
    try:
        _checked(h, d, headers, body)
        if payload is None:
            raise InvalidError("the body must be a JSON object (GitHub's payload)", field="body")
    except AgentcomError as exc:
        raise await _refuse(h, d, exc) from None
    async with h.engine.begin() as conn:
        row_id = await store.claim(conn, d)
    if row_id is None:
        raise await _refuse(
            h,
            d,
            ConflictError(
                f"delivery {d.delivery} was received and acted on before; a delivery is "
                "acted on once",
                code="delivery_replayed",
            ),
        )
    return await _act(h, d, row_id, payload)


async def _act(h: Hooks, d: store.Delivery, row_id: int, payload: dict[str, Any]) -> WebhookAnswer:
    try:
        outcome, reason = await events.handle(h, d, payload)
    except Exception as exc:
        # released: GitHub's redelivery of this id is then accepted, and its steps repeat safely
        reason = exc.detail if isinstance(exc, AgentcomError) else "internal error; see the logs"
        log.exception("webhook.failed", extra={"delivery": d.delivery, "event": d.event})
        async with h.engine.begin() as conn:
            await store.finish(conn, row_id, d, 503, "failed", reason)
            await store.release(conn, row_id)
        raise UnavailableError(
            f"the delivery could not be acted on ({reason}); redeliver it", code="webhook_failed"
        ) from None
    async with h.engine.begin() as conn:
        await store.finish(conn, row_id, d, 200, outcome, reason)
    log.info(
        "webhook.handled", extra={"delivery": d.delivery, "event": d.event, "outcome": outcome}
    )
    return WebhookAnswer(outcome=outcome, reason=reason, done=d.done)


def _text(value: object) -> str | None:
    return value[:200] if isinstance(value, str) and value else None


async def deliveries(h: Hooks, *, cursor: str | None, limit: int, repo: str | None) -> DeliveryPage:
    async with h.engine.connect() as conn:
        found, next_cursor = await store.page(
            conn, cursor=None if cursor is None else int(cursor), limit=limit, repo=repo
        )
    return DeliveryPage(deliveries=found, next_cursor=next_cursor)
