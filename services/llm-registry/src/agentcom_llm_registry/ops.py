"""Use cases of the registry: endpoints, health checks, heartbeats, costs.

The `Llm` object is built once in the lifespan and shared by HTTP routes, NATS handlers and
loops. Endpoint changes commit with their outbox event; call-path state stays in memory.

Size: one object (`Llm`) owns the endpoint table and its in-memory mirror, so every writer of
endpoints (CRUD, the health pass, heartbeat-learnt endpoints, sharing) stays in it, under one
change counter and wake; the helpers at the end only build rows and endpoints.
"""

import asyncio
import contextlib
import json
import logging
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import clock, consumer, outbox, prices, subjects
from agentcom_common.contracts.hub import HubState, HubStateChanged
from agentcom_common.contracts.llm import EndpointChanged, TierFallback
from agentcom_common.errors import ConflictError, DuplicateError, InvalidError, NotFoundError
from agentcom_llm_registry import store
from agentcom_llm_registry.budgets import Budgets
from agentcom_llm_registry.gateway import Gateway
from agentcom_llm_registry.ledger import Ledger
from agentcom_llm_registry.providers import PROVIDERS, as_list, as_obj
from agentcom_llm_registry.registry import Endpoint, HostResources, Registry
from agentcom_llm_registry.settings import LlmSettings
from agentcom_llm_registry.views import AddEndpoint, EndpointView, Metrics, Resources

log = logging.getLogger(__name__)
CONSUMER = "llm-registry-heartbeats"


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
        self.hub_state = HubState.RESTING  # until the hub announces one
        self._hub_state_at: datetime | None = None
        self.gateway = Gateway(
            self.registry,
            self.ledger,
            self.budgets,
            request_timeout=settings.llm_request_timeout.total_seconds(),
            connect_timeout=settings.llm_connect_timeout.total_seconds(),
            reserve_max_tokens=settings.llm_reserve_max_tokens,
        )
        self._wake = asyncio.Event()
        self._changes = 0  # bumped by every local add/remove (see reload)

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
            self.registry.put(_endpoint(row))
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
            await self._event(
                conn,
                subjects.LLM_ENDPOINT_ADDED,
                body.id,
                body.provider,
                "unknown",
                f"added ({source})",
            )
        endpoint = self.registry.put(_endpoint_from(values))
        self._changes += 1
        self._wake.set()
        return self.view(endpoint)

    async def remove(self, endpoint_id: str) -> None:
        async with self.engine.begin() as conn:
            if not await store.delete_endpoint(conn, endpoint_id):
                raise NotFoundError(f"no endpoint {endpoint_id}", code="endpoint_not_found")
            known = self.registry.endpoints.pop(endpoint_id, None)
            self._changes += 1
            await self._event(
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

    async def _event(
        self, conn: Any, subject: str, endpoint_id: str, provider: str, health: str, reason: str
    ) -> None:
        event = EndpointChanged(
            endpoint_id=endpoint_id, provider=provider, health=health, reason=reason, at=clock.now()
        )
        await outbox.add(conn, self.outbox, subject, event)

    # health

    async def check(self, endpoint: Endpoint) -> None:
        """One health check with discovery; unhealthy after N failures, then backing off."""
        interval = self.settings.llm_health_interval.total_seconds()
        try:
            models, warm = await self.gateway.probe(
                endpoint, self.settings.llm_health_timeout.total_seconds()
            )
        except Exception as exc:  # noqa: BLE001 - any failure is a failed check, named by kind
            before = endpoint.health  # read after the await: a concurrent check may have moved it
            endpoint.failures += 1
            endpoint.last_error = str(exc)[:200] or type(exc).__name__
            if endpoint.failures >= self.settings.llm_unhealthy_after:
                endpoint.health = "unhealthy"
                extra = endpoint.failures - self.settings.llm_unhealthy_after
                pause = min(
                    interval * 2**extra, self.settings.llm_recover_backoff_max.total_seconds()
                )
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
            with contextlib.suppress(
                Exception
            ):  # Postgres away: the state is still right in memory
                async with self.engine.begin() as conn:
                    await self._event(
                        conn,
                        subjects.LLM_ENDPOINT_HEALTH_CHANGED,
                        endpoint.id,
                        endpoint.provider,
                        endpoint.health,
                        endpoint.last_error or "check passed",
                    )

    async def health_forever(self) -> None:
        interval = self.settings.llm_health_interval.total_seconds()
        next_reload = 0.0
        while True:
            now = time.monotonic()
            if now >= next_reload:
                try:
                    await self.reload()
                except Exception:  # Postgres away: keep checking what we know
                    log.exception("endpoints.reload_failed")
                next_reload = now + interval
            probed = [e for e in self.registry.endpoints.values() if e.probed()]
            due = [e for e in probed if e.next_check <= now]
            if due:
                await asyncio.gather(*(self.check(e) for e in due))
            soonest = min((e.next_check for e in probed), default=now + interval)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(
                    max(0.001, min(soonest, next_reload) - time.monotonic())
                ):
                    await self._wake.wait()

    # tier fallbacks

    async def fall_back(self, tier: str, seconds: float, reason: str) -> TierFallback:
        """Route `tier` from the next tier's classes for `seconds` (0 ends it). Postgres holds
        it, so every replica routes alike and a restart keeps it, and its end is the
        database's clock; `agentcom.evt.llm.tier_fallback` makes the other replicas re-read
        at once (their health pass would, within `llm_health_interval`)."""
        self.registry.may_fall_back(tier, seconds)
        self._changes += 1  # a reload reading before this commit must not undo it here
        async with self.engine.begin() as conn:
            if seconds > 0:
                until = await store.set_fallback(conn, tier, timedelta(seconds=seconds), reason)
            else:
                until = None
                await store.end_fallback(conn, tier)
            classes = self.registry.fall_back(tier, until, seconds)
            event = TierFallback(tier=tier, until=until, classes=classes)
            await outbox.add(conn, self.outbox, subjects.LLM_TIER_FALLBACK, event)
        # once more after the commit: a re-read that began before it (an event's, a health
        # pass's) sees the count move and reads again; one that ended before it is undone here
        self._changes += 1
        self.registry.fall_back(tier, until, seconds)
        return event

    async def reload_fallbacks(self) -> None:
        """Re-read the fallbacks; a read a change of this replica raced is read again (CI saw
        a re-read from before an end applied after it, routing the ended fallback on)."""
        while True:
            changes = self._changes
            async with self.engine.connect() as conn:
                fallbacks = await store.active_fallbacks(conn)
            if changes == self._changes:
                self.registry.follow_fallbacks(fallbacks)
                return

    async def follow_fallbacks(self, nc: Client) -> None:
        """Re-read the fallbacks whenever any replica sets or ends one."""
        await nc.subscribe(subjects.LLM_TIER_FALLBACK, cb=self._on_fallback)  # pyright: ignore[reportUnknownMemberType]  # nats-py: untyped Future parameter

    async def _on_fallback(self, _msg: Msg) -> None:
        try:
            await self.reload_fallbacks()
        except Exception:  # Postgres away: the health pass reads them again
            log.exception("fallbacks.reload_failed")

    # sidecar heartbeats

    async def on_heartbeat(self, agent_id: str, data: dict[str, Any], age: float = 0.0) -> None:
        """Join a heartbeat's host resources; learn the sidecar's local Ollama if it has one.

        `agent_id` is the agent of the subject it came on (its NATS user may publish there
        alone); a body naming another agent is refused. The endpoint learnt serves that agent
        alone until an admin shares it, and is not probed until then. `age` (seconds since the
        sidecar sent it) keeps a replayed old heartbeat from looking fresh: scoring ignores
        resources older than `llm_resource_stale`.
        """
        named = data.get("agent_id")
        if named is not None and named != agent_id:
            raise InvalidError(
                f"a heartbeat on {agent_id}'s subject names agent {named!r}",
                code="wrong_agent",
                field="agent_id",
            )
        host = str(data.get("host") or agent_id)[:200]
        self.registry.hosts[host] = HostResources(
            host=host,
            agent_id=agent_id,
            cpu_percent=_num(data.get("cpu_percent")),
            ram_percent=_num(data.get("ram_percent")),
            vram_percent=_num(data.get("vram_percent")),
            load=_num(data.get("load")),
            gpus=[
                cast(dict[str, Any], g) for g in as_list(data.get("gpus")) if isinstance(g, dict)
            ][:16],
            at=time.monotonic() - max(0.0, age),
        )
        url = data.get("ollama_url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return
        endpoint_id = f"sidecar-{agent_id}"[:64]
        models = [str(m)[:200] for m in as_list(data.get("models")) if isinstance(m, str)][:200]
        known = self.registry.get(endpoint_id)
        if (
            known is not None
            and known.owner == agent_id
            and known.base_url == url.rstrip("/")
            and known.host == host
            and known.models == models
        ):
            return
        values = {
            "id": endpoint_id,
            "provider": "ollama",
            "base_url": url.rstrip("/")[:500],
            "api_key": None,
            "classes": ["local"],
            "models": models,
            "host": host,
            "source": f"sidecar:{agent_id}",
            "owner": agent_id,
        }
        async with self.engine.begin() as conn:
            learnt = await store.learn_endpoint(conn, values)
            if learnt is None:
                raise InvalidError(
                    f"endpoint {endpoint_id} was not learnt from {agent_id}; left as it is",
                    code="endpoint_taken",
                )
            fresh, shared = learnt
            if fresh:
                await self._event(
                    conn,
                    subjects.LLM_ENDPOINT_ADDED,
                    endpoint_id,
                    "ollama",
                    "unknown",
                    f"reported by sidecar {agent_id}; serves it alone until shared",
                )
        self.registry.put(_endpoint_from(values | {"shared": shared}))
        self._changes += 1
        self._wake.set()

    async def share(self, endpoint_id: str) -> Endpoint:
        """Let every caller use an endpoint learnt from an agent; probed from now on."""
        async with self.engine.begin() as conn:
            row = await store.share_endpoint(conn, endpoint_id)
            if row is None:
                self.find(endpoint_id)  # 404 when there is none at all
                raise ConflictError(
                    f"endpoint {endpoint_id} was added by hand: every caller may use it already",
                    code="not_learnt",
                )
            await self._event(
                conn,
                subjects.LLM_ENDPOINT_SHARED,
                endpoint_id,
                row.provider,
                "unknown",
                f"shared by an admin (learnt from agent {row.owner})",
            )
        endpoint = self.registry.put(_endpoint(row))
        self._changes += 1
        self._wake.set()
        return endpoint

    async def consume_heartbeats(self, js: JetStreamContext) -> None:
        """Our own durable consumer on REPORTS: heartbeats are read as raw JSON, the rest acked;
        a report that cannot be read is refused once (`agentcom_common.consumer`)."""
        await consumer.consume(
            js,
            subjects.REPORTS_STREAM,
            subjects.REPORTS_ALL,
            CONSUMER,
            consumer.Policy.of(self.settings),
            self._report,
        )

    async def _report(self, msg: Msg) -> None:
        speaker = consumer.speaker_of(msg.subject)
        data: Any = json.loads(msg.data)  # too deep: RecursionError, refused as input
        if speaker is None or not isinstance(data, dict):
            return  # not a report of an agent: nothing for us
        body = as_obj(data)
        if body.get("kind") != "heartbeat":
            return
        sent = msg.metadata.timestamp
        age = (clock.now() - sent).total_seconds() if sent else 0.0
        await self.on_heartbeat(speaker, body, age)

    # the hub's state: which hub budget the hub's calls pay into

    async def follow_hub_state(self, nc: Client, js: JetStreamContext) -> None:
        """Keep `hub_state` at the newest `agentcom.evt.hub.state_changed`: the one stored in
        EVENTS now, then each one published (the subscription lives as long as the NATS
        connection). Only services may publish there."""
        await nc.subscribe(subjects.HUB_STATE_CHANGED, cb=self._on_hub_state)  # pyright: ignore[reportUnknownMemberType]  # nats-py: untyped Future parameter
        with contextlib.suppress(nats.js.errors.NotFoundError):  # the hub announced none yet
            last = await js.get_last_msg(subjects.EVENTS_STREAM, subjects.HUB_STATE_CHANGED)
            self._hub_state_from(last.data or b"")

    async def _on_hub_state(self, msg: Msg) -> None:
        self._hub_state_from(msg.data)

    def _hub_state_from(self, data: bytes) -> None:
        try:
            event = HubStateChanged.model_validate_json(data)
        except ValueError:
            log.warning("hub_state.unreadable")
            return
        if self._hub_state_at is None or event.at >= self._hub_state_at:  # newest wins
            self.hub_state, self._hub_state_at = event.state, event.at
            log.info("hub_state.followed", extra={"state": event.state})

    # costs

    async def costs(self, since: datetime, group_by: str) -> list[Any]:
        await self.ledger.flush()
        async with self.engine.connect() as conn:
            return await store.cost_summary(conn, since, group_by)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


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


def _endpoint_from(values: dict[str, Any]) -> Endpoint:
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


def _endpoint(row: Any) -> Endpoint:
    return _endpoint_from(dict(row._mapping))
