"""One way to build, start and stop a service process.

A service hands `create_app` a `ServiceSpec` (its name, schema, migrations, routers, its
settings type and the builder of its own state); this module does the rest the same way
everywhere: migrations at start, NATS with the streams, the `agentcom-<name>` nats.micro service,
the outbox relay, `/healthz` and `/readyz`, the error model and token auth. Nothing is built at
import: `run()` in `__main__`.

A service's own state (its ops object, wake events, loops' shared objects) is what its builder
returns, built in the lifespan of each app and read by routes with `own(request, Type)`. Nothing
of it lives in a module: two apps in one process (two replicas in a test) share nothing.
"""

import asyncio
import contextlib
import functools
import logging
import os
import socket
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import PlainTextResponse
from fastapi_offline import FastAPIOffline
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.micro.service import Group
from opentelemetry import trace
from sqlalchemy import MetaData, Table
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp

from agentcom_common import (
    auth,
    cancelling,
    clock,
    db,
    logs,
    messaging,
    metering,
    micro,
    migrations,
    openapi,
    outbox,
    subjects,
    telemetry,
    web,
)
from agentcom_common.contracts import Request as RequestContract
from agentcom_common.contracts.auth import TokenRevoked
from agentcom_common.contracts.system import Health, HealthCheck, ServiceStarted
from agentcom_common.outbox import Relay
from agentcom_common.settings import CommonSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Resources:
    """Everything a request or loop of one process may use; built once in the lifespan."""

    settings: CommonSettings
    engine: AsyncEngine
    nc: Client
    js: JetStreamContext
    outbox: Table
    verifier: auth.Verifier
    group: Group
    relay: Relay
    """This app's outbox relay: a hot path that skips the NOTIFY wakes it after its commit."""


class Loops:
    """The long-running loops of one process (relay, sweepers, consumers).

    Each is referenced until `close()` cancels it; one that ends by itself is logged, since a
    loop is meant to run for the life of the process.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, name: str, loop: Coroutine[object, object, None]) -> None:
        task = asyncio.create_task(loop, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            log.error("loop.ended", extra={"loop": task.get_name()}, exc_info=task.exception())

    async def close(self, grace: float = 5.0) -> None:
        """Cancel every loop (again while it runs on: `cancelling`); one still running after
        `grace` s is logged, not awaited."""
        stuck = await cancelling.cancel_and_wait(list(self._tasks), grace)
        for task in stuck:
            frames = "; ".join(f"{f.f_code.co_filename}:{f.f_lineno}" for f in task.get_stack())
            log.error("loop.stuck", extra={"loop": task.get_name(), "at": frames})


SettingsT = TypeVar("SettingsT", bound=CommonSettings)
OwnT = TypeVar("OwnT")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ServiceSpec(Generic[SettingsT, OwnT]):
    name: str  # as in `agentcom-<name>` and the ports table: "llm-registry"
    rpc: str  # the NATS RPC group: agentcom.rpc.<rpc>.*
    description: str
    version: str
    metadata: MetaData  # its schema is the service's schema
    migrations: Path
    settings: type[SettingsT]
    """The service's own settings type; `create_app` turns common settings into it."""
    build: Callable[[SettingsT, Resources, Loops], Awaitable[OwnT]]
    """Called once everything is up: registers NATS endpoints, spawns loops and returns the
    service's own state, which routes read with `own(request, Type)`."""
    routers: Sequence[APIRouter] = ()
    middleware: Sequence[Callable[[ASGIApp], ASGIApp]] = ()
    """The service's own ASGI middleware, inside `web.InputLimits` (first listed: innermost)."""
    samplers: Sequence[Callable[[Resources], metering.Sampler]] = ()
    """Gauges read from the database every `metrics_sample_interval` (queue depth, agents)."""
    own_scrape: bool = False
    """True when a router of the service serves `/metrics` itself (with `metering.render()`)."""

    @property
    def schema(self) -> str:
        assert self.metadata.schema is not None, "a service's MetaData names its schema"
        return self.metadata.schema

    @property
    def outbox(self) -> Table:
        return self.metadata.tables[f"{self.schema}.outbox"]


AnySpec = ServiceSpec[Any, Any]  # where only the shell's own fields are read


def resources(request: Request) -> Resources:
    return request.app.state.resources


def own(conn: HTTPConnection, kind: type[T]) -> T:
    """The service's own state of the app serving `conn` (what its spec's `build` returned);
    `kind` checks it, so a route reads a typed object and never a loose `app.state` field."""
    return own_of(conn.app, kind)


def own_of(app: FastAPI, kind: type[T]) -> T:
    value: object = getattr(app.state, "own", None)
    if not isinstance(value, kind):
        raise RuntimeError(f"the app's own state is {type(value).__name__}, not {kind.__name__}")
    return value


def settings_of(kind: type[SettingsT], settings: CommonSettings) -> SettingsT:
    """`settings` as the service's own type: the same object when it is one already, else its
    values with the service's own fields read from the environment (as `kind()` reads them)."""
    return settings if isinstance(settings, kind) else kind(**settings.model_dump())


Res = Annotated[Resources, Depends(resources)]


class HealthRequest(RequestContract):
    """Body of `agentcom.rpc.<service>.health` (empty)."""


def create_app(spec: "ServiceSpec[SettingsT, OwnT]", common: CommonSettings) -> FastAPI:
    """The FastAPI app of one service; its lifespan owns every connection and loop."""
    settings = settings_of(spec.settings, common)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncGenerator[None]:
        async with _running(spec, settings, app) as res:
            app.state.resources = res
            app.state.verifier = res.verifier
            yield

    # FastAPIOffline: /docs and /redoc from the package's own copy of Swagger UI and ReDoc
    # (FastAPI's load them from a CDN, so /docs was a blank page on a machine without internet)
    app = FastAPIOffline(
        title=f"agentcom-{spec.name}",
        version=spec.version,
        description=spec.description,
        lifespan=lifespan,
        # FastAPI's own HTTP server span (named by route, continuing the caller's
        # `traceparent`, current for the whole request, so log lines and outbox rows carry
        # it) is the one server span per request. The global provider is passed on purpose:
        # FastAPI skips tracing while no SDK provider is installed, and then the caller's
        # context would stop here; the API's no-op spans still carry it on (an app built
        # without `run`, as the tests build them). Its per-operation spans (dependencies,
        # endpoint, serialization) would triple every call's spans for nothing we ask of one.
        telemetry={"operation_spans": False, "tracer_provider": trace.get_tracer_provider()},
    )
    web.install_error_handlers(app)
    for middleware in spec.middleware:
        app.add_middleware(middleware)
    # outermost: no route, and no service's own middleware, sees a body the limits refuse
    app.add_middleware(
        web.InputLimits, max_body=settings.http_max_body, max_depth=settings.json_max_depth
    )
    health = _health_router(spec)
    openapi.declare(health.routes)
    app.include_router(health)
    for router in spec.routers:
        openapi.declare(router.routes)
        app.include_router(router, responses=openapi.errors(*openapi.EVERY_ROUTE))
    openapi.install(app)
    # what a 405's `Allow` is computed from (`web.install_error_handlers`)
    app.state.http_routes = [r for router in (health, *spec.routers) for r in router.routes]
    return app


@contextlib.asynccontextmanager
async def _running(
    spec: "ServiceSpec[SettingsT, OwnT]", settings: SettingsT, app: FastAPI
) -> AsyncGenerator[Resources]:
    engine = db.create_engine(settings, pool_size=settings.db_pool_size)
    try:
        await db.wait_until_reachable(engine, deadline=30)
        await auth.migrate(engine)
        await migrations.upgrade(engine, spec.migrations, spec.schema)
        if settings.admin_token is not None:
            await auth.store(
                engine, settings.admin_token.get_secret_value(), auth.Role.ADMIN, "seeded"
            )
        nc = await messaging.connect(settings, f"agentcom-{spec.name}")
        try:
            js = nc.jetstream()  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
            await messaging.ensure_streams(js, settings)
            service, group = await micro.start(
                nc, spec.name, spec.rpc, spec.version, spec.description
            )
            epoch = messaging.connection_epoch(nc)
            verifier = auth.Verifier(engine, settings.auth_cache_ttl, epoch)
            relay = Relay(
                engine,
                js,
                spec.outbox,
                interval=settings.outbox_interval,
                batch=settings.outbox_batch,
                linger=settings.outbox_linger,
            )
            res = Resources(settings, engine, nc, js, spec.outbox, verifier, group, relay)
            await _serve(spec, res)
            loops = Loops()
            try:
                loops.spawn("outbox-relay", relay.run())
                samplers = [
                    functools.partial(outbox.sample_backlog, engine, spec.outbox),
                    *(make(res) for make in spec.samplers),
                ]
                every = settings.metrics_sample_interval
                loops.spawn("metrics-sampler", metering.sample_forever(every, samplers))
                app.state.own = await spec.build(settings, res, loops)
                await _announce(spec, res)
                log.info("service.started", extra={"version": spec.version})
                yield res
            finally:
                await loops.close()
            with contextlib.suppress(Exception):  # NATS may be gone; stopping must still finish
                await asyncio.wait_for(service.stop(), timeout=2)
        finally:
            await _close(nc)
    finally:
        await engine.dispose()


async def _close(nc: Client) -> None:
    """Drain when connected (in-flight replies finish), else just close: never hang on exit."""
    if nc.is_connected:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.drain(), timeout=5)
    if not nc.is_closed:
        with contextlib.suppress(Exception):  # a vanished server resets the socket on close
            await nc.close()


async def _serve(spec: AnySpec, res: Resources) -> None:
    async def health(_req: HealthRequest) -> Health:
        return await check_health(spec, res)

    await res.group.add_endpoint(name="health", handler=micro.endpoint(HealthRequest, health))

    async def on_revoked(msg: Msg) -> None:
        with contextlib.suppress(ValueError):
            res.verifier.forget(TokenRevoked.model_validate_json(msg.data).token_id)

    await res.nc.subscribe(subjects.TOKEN_REVOKED, cb=on_revoked)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks


async def _announce(spec: AnySpec, res: Resources) -> None:
    event = ServiceStarted(
        service=spec.name,
        version=spec.version,
        instance=f"{socket.gethostname()}:{os.getpid()}",
        started_at=clock.now(),
    )
    async with res.engine.begin() as conn:
        await outbox.add(conn, spec.outbox, subjects.SERVICE_STARTED, event)


async def check_health(spec: AnySpec, res: Resources) -> Health:
    timeout = res.settings.ready_timeout.total_seconds()
    checks = [
        await _check("postgres", db.ping(res.engine), timeout),
        await _check("nats", messaging.ping(res.nc, timeout), timeout),
    ]
    ready = all(check.ok for check in checks)
    return Health(service=spec.name, version=spec.version, ready=ready, checks=checks)


async def _check(name: str, probe: Awaitable[object], timeout: float) -> HealthCheck:
    try:
        async with asyncio.timeout(timeout):
            await probe
    except Exception as exc:  # noqa: BLE001 - any failure of a probe is "not ready", with its kind named
        return HealthCheck(name=name, ok=False, detail=type(exc).__name__)
    return HealthCheck(name=name, ok=True)


def _health_router(spec: AnySpec) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        """Answer 200 while the process is up (liveness). Touches no dependency."""
        return Health(service=spec.name, version=spec.version, ready=True)

    @router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
    async def readyz(res: Res, response: Response) -> Health:
        """Answer 200 when Postgres and NATS both answer within `ready_timeout`, else 503."""
        health = await check_health(spec, res)
        if not health.ready:
            response.status_code = 503
        return health

    @router.get("/api/whoami", tags=["auth"], responses=openapi.errors(503))
    async def whoami(who: web.CurrentPrincipal) -> dict[str, str]:
        """Show which token you are calling with: its id, role and name.

        Errors: 401 `missing_token` or `invalid_token` (unknown or revoked); 503
        `db_unavailable` while Postgres is away (the token cannot be checked).
        """
        return {"token_id": who.token_id, "role": who.role.value, "name": who.name}

    if not spec.own_scrape:

        @router.get("/metrics", response_class=PlainTextResponse, tags=["metrics"])
        async def prometheus_metrics() -> PlainTextResponse:
            """Prometheus text: every OTel instrument this process recorded. No token, like
            `/healthz`: a scraper has none, and counts carry no task content."""
            return PlainTextResponse(metering.render(), media_type=metering.CONTENT_TYPE)

    return router


def run(
    spec: AnySpec,
    settings: CommonSettings,
    factory: Callable[[CommonSettings], FastAPI] | None = None,
) -> None:
    """The body of a service's `__main__`: logs, telemetry, then uvicorn until SIGTERM.

    `factory` builds the app when the service adds to the shell (its own settings, endpoints).
    """
    logs.configure(spec.name, settings.log_level)
    telemetry.configure(spec.name, settings.otel_endpoint)
    uvicorn.run(
        factory(settings) if factory else create_app(spec, settings),
        host=settings.http_host,
        port=settings.http_port or settings.port(spec.name),
        log_config=None,
        timeout_graceful_shutdown=int(settings.shutdown_grace.total_seconds()),
    )
