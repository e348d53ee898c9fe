"""Health checks: one check of an endpoint (with model discovery), and the loop that checks
each probed endpoint when it is due and re-reads the endpoint table every health interval."""

import asyncio
import contextlib
import logging
import time

from agentcom_common import subjects
from agentcom_llm_registry.ops import Llm
from agentcom_llm_registry.registry import Endpoint

log = logging.getLogger(__name__)


async def check(s: Llm, endpoint: Endpoint) -> None:
    """One health check with discovery; unhealthy after N failures, then backing off."""
    settings = s.settings
    interval = settings.llm_health_interval.total_seconds()
    try:
        models, warm = await s.gateway.probe(endpoint, settings.llm_health_timeout.total_seconds())
    except Exception as exc:  # noqa: BLE001 - any failure is a failed check, named by kind
        before = endpoint.health  # read after the await: a concurrent check may have moved it
        endpoint.failures += 1
        endpoint.last_error = str(exc)[:200] or type(exc).__name__
        if endpoint.failures >= settings.llm_unhealthy_after:
            endpoint.health = "unhealthy"
            extra = endpoint.failures - settings.llm_unhealthy_after
            pause = min(interval * 2**extra, settings.llm_recover_backoff_max.total_seconds())
        else:
            pause = interval
    else:
        before = endpoint.health
        endpoint.failures = 0
        endpoint.last_error = None
        endpoint.health = "healthy"
        endpoint.discovered = models
        if warm is not None:
            endpoint.warm = warm
        pause = interval
    endpoint.checked_at = time.monotonic()
    endpoint.next_check = endpoint.checked_at + pause
    if endpoint.health != before:
        log.info(
            "endpoint.health",
            extra={
                "endpoint": endpoint.id,
                "health": endpoint.health,
                "error": endpoint.last_error,
            },
        )
        with contextlib.suppress(Exception):  # Postgres away: the state is still right in memory
            async with s.engine.begin() as conn:
                await s.event(
                    conn,
                    subjects.LLM_ENDPOINT_HEALTH_CHANGED,
                    endpoint.id,
                    endpoint.provider,
                    endpoint.health,
                    endpoint.last_error or "check passed",
                )


async def check_forever(s: Llm) -> None:
    """Check each probed endpoint when due; re-read the table every health interval (other
    replicas' changes); an endpoint put meanwhile wakes the loop at once."""
    interval = s.settings.llm_health_interval.total_seconds()
    next_reload = 0.0
    while True:
        now = time.monotonic()
        if now >= next_reload:
            try:
                await s.reload()
            except Exception:  # Postgres away: keep checking what we know
                log.exception("endpoints.reload_failed")
            next_reload = now + interval
        probed = [e for e in s.registry.endpoints.values() if e.probed()]
        due = [e for e in probed if e.next_check <= now]
        if due:
            await asyncio.gather(*(check(s, e) for e in due))
        soonest = min((e.next_check for e in probed), default=now + interval)
        await s.wait_for_change(max(0.001, min(soonest, next_reload) - time.monotonic()))
