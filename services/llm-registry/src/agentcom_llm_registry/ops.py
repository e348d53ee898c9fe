"""The service's object (`Llm`), the one owner of the endpoint table and its in-memory mirror.

`Llm` is built once in the lifespan and shared by HTTP routes, NATS handlers and loops; it holds
the registry (the mirror the call path reads), the gateway, ledger, budgets and the hub state
followed. Endpoint CRUD is here. Every writer of endpoints or fallbacks, here or in the modules
that take an `Llm` (`health.py`: the check pass and its loop; `heartbeats.py`: sidecar
heartbeats and the endpoints learnt from them; `fallbacks.py`: tier fallbacks), mirrors its
write through `put`/`changed` and its event through `event`: one change counter, so a reload
that raced a local write is dropped instead of undoing it, and one wake for the health loop.
"""

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import clock, outbox, prices, subjects
from agentcom_common.contracts.llm import EndpointChanged
from agentcom_common.errors import DuplicateError, NotFoundError
from agentcom_llm_registry import store
from agentcom_llm_registry.budgets import Budgets
from agentcom_llm_registry.gateway import Gateway
from agentcom_llm_registry.hub_state import HubStateFollower
from agentcom_llm_registry.ledger import Ledger
from agentcom_llm_registry.providers import PROVIDERS
from agentcom_llm_registry.registry import Endpoint, Registry
from agentcom_llm_registry.settings import LlmSettings
from agentcom_llm_registry.views import AddEndpoint, EndpointView, Metrics, Resources

log = logging.getLogger(__name__)


class Llm:
    def __init__(self, settings: LlmSettings, engine: AsyncEngine, outbox_table: Table) -> None:
        self.settings = settings
        self.engine = engine
        self.outbox = outbox_table
        self.registry = Registry(
            settings.llm_tiers,
            circuit_failures=settings.llm_circuit_failures,
            circuit_open=settings.llm_circuit_open.total_seconds(),
            resource_stale=settings.llm_resource_stale.total_seconds(),
            latency_window=settings.llm_latency_window,
        )
        directory = Path(settings.llm_ledger_dir or settings.home / "llm-ledger")
        self.ledger = Ledger(
            engine,
            outbox_table,
            directory,
            prices.merged(settings.llm_prices),
            settings.llm_ledger_flush_interval,
        )
        self.budgets = Budgets(engine, settings)
        self.hub = HubStateFollower()
        self.gateway = Gateway(
            self.registry,
            self.ledger,
            self.budgets,
            request_timeout=settings.llm_request_timeout.total_seconds(),
            connect_timeout=settings.llm_connect_timeout.total_seconds(),
            reserve_max_tokens=settings.llm_reserve_max_tokens,
        )
        self._wake = asyncio.Event()
        self._changes = 0  # bumped by every local write of endpoints or fallbacks (see reload)

    async def start(self) -> None:
        replayed = await self.ledger.replay()
        if replayed:
            log.info("ledger.replayed", extra={"rows": replayed})
        self.ledger.open()
        await self.gateway.open()
        await self.reload()

    async def stop(self) -> None:
        await self.ledger.close()
        await self.gateway.close()

    # the change counter and the wake

    @property
    def changes(self) -> int:
        """How many local writes so far: a re-read that saw it move raced one and is stale."""
        return self._changes

    def changed(self) -> None:
        """Count a local write of endpoints or fallbacks (call it before the mirror is read)."""
        self._changes += 1

    def put(self, endpoint: Endpoint) -> Endpoint:
        """Mirror an endpoint just written, count the change and wake the health loop."""
        known = self.registry.put(endpoint)
        self._changes += 1
        self._wake.set()
        return known

    async def wait_for_change(self, seconds: float) -> None:
        """Sleep up to `seconds`, less if an endpoint is put meanwhile (`put`)."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    # endpoints

    async def reload(self) -> None:
        """Bring the in-memory list and the tier fallbacks in line with the tables (other
        replicas' changes)."""
        changes = self._changes
        async with self.engine.connect() as conn:
            rows = await store.all_endpoints(conn)
            fallbacks = await store.active_fallbacks(conn)
        if changes != self._changes:
            return  # a change here raced this read; the next pass reads again
        self.registry.follow_fallbacks(fallbacks)
        ids: set[str] = set()
        for row in rows:
            ids.add(row.id)
            self.registry.put(endpoint_of(row))
        for gone in set(self.registry.endpoints) - ids:
            del self.registry.endpoints[gone]

    async def add(self, body: AddEndpoint, source: str = "manual") -> EndpointView:
        """Register an endpoint. Idempotency: the id; a second add with it is `duplicate` (409)."""
        values = _values(body, source)
        async with self.engine.begin() as conn:
            if not await store.insert_endpoint(conn, values):
                raise DuplicateError(
                    f"endpoint {body.id} exists; remove it first or pick another id",
                    code="endpoint_exists",
                )
            await self.event(
                conn,
                subjects.LLM_ENDPOINT_ADDED,
                body.id,
                body.provider,
                "unknown",
                f"added ({source})",
            )
        return self.view(self.put(endpoint_from(values)))

    async def remove(self, endpoint_id: str) -> None:
        async with self.engine.begin() as conn:
            if not await store.delete_endpoint(conn, endpoint_id):
                raise NotFoundError(f"no endpoint {endpoint_id}", code="endpoint_not_found")
            known = self.registry.endpoints.pop(endpoint_id, None)
            self.changed()
            await self.event(
                conn,
                subjects.LLM_ENDPOINT_REMOVED,
                endpoint_id,
                known.provider if known else "",
                "removed",
                "removed",
            )

    def find(self, endpoint_id: str) -> Endpoint:
        endpoint = self.registry.get(endpoint_id)
        if endpoint is None:
            raise NotFoundError(f"no endpoint {endpoint_id}", code="endpoint_not_found")
        return endpoint

    def view(self, endpoint: Endpoint) -> EndpointView:
        host = self.registry.host_of(endpoint)
        p50 = endpoint.latency_p50()
        return EndpointView(
            id=endpoint.id,
            provider=endpoint.provider,
            base_url=endpoint.base_url,
            has_api_key=endpoint.api_key is not None,
            classes=endpoint.classes,
            models=endpoint.all_models(),
            warm_models=endpoint.warm,
            host=endpoint.host,
            source=endpoint.source,
            owner=endpoint.owner,
            shared=endpoint.shared,
            health=endpoint.health,
            consecutive_failures=endpoint.failures,
            last_error=endpoint.last_error,
            circuit=endpoint.circuit,
            resources=None
            if host is None
            else Resources(
                host=host.host,
                agent_id=host.agent_id,
                cpu_percent=host.cpu_percent,
                ram_percent=host.ram_percent,
                vram_percent=host.vram_percent,
                load=host.load,
                gpus=host.gpus,
                age_s=round(time.monotonic() - host.at, 3),
            ),
            metrics=Metrics(
                calls=endpoint.calls,
                errors=endpoint.errors,
                in_flight=endpoint.in_flight,
                tokens_in=endpoint.tokens_in,
                tokens_out=endpoint.tokens_out,
                latency_p50_ms=None if p50 is None else round(p50 * 1000, 3),
                error_rate=round(endpoint.error_rate(), 4),
            ),
        )

    async def event(
        self, conn: Any, subject: str, endpoint_id: str, provider: str, health: str, reason: str
    ) -> None:
        """Add an `EndpointChanged` to the outbox in `conn`: it commits with the change."""
        event = EndpointChanged(
            endpoint_id=endpoint_id, provider=provider, health=health, reason=reason, at=clock.now()
        )
        await outbox.add(conn, self.outbox, subject, event)


def _values(body: AddEndpoint, source: str) -> dict[str, Any]:
    return {
        "id": body.id,
        "provider": body.provider,
        "base_url": body.base_url,
        "api_key": body.api_key.get_secret_value() if body.api_key else None,
        "classes": list(body.classes),
        "models": list(body.models),
        "host": body.host,
        "source": source,
        "owner": None,
        "shared": True,
    }


def endpoint_from(values: dict[str, Any]) -> Endpoint:
    """The `Endpoint` of a row's values (`llm.endpoints` columns)."""
    provider = values["provider"]
    assert provider in PROVIDERS
    return Endpoint(
        id=values["id"],
        provider=provider,
        base_url=values["base_url"],
        api_key=values["api_key"],
        classes=list(values["classes"]),
        models=list(values["models"]),
        host=values["host"],
        source=values["source"],
        owner=values.get("owner"),
        shared=bool(values.get("shared", True)),
    )


def endpoint_of(row: Any) -> Endpoint:
    return endpoint_from(dict(row._mapping))
