"""pytest plugin for every AgentCom package: real Postgres and NATS, fresh for each test.

Loaded by `-p agentcom_common.testing` in the root pytest config. Fixtures:
- `pg_server` (session): an embedded Postgres, or the one at `AGENTCOM_TEST_DATABASE_URL`.
- `pg_template` (session): a database with every schema migrated once (auth + each service
  registered under the `agentcom.services` entry point group).
- `db_url` (test): `CREATE DATABASE … TEMPLATE` of it, dropped afterwards.
- `nats_server` (test): its own `nats-server -js` on a free port with its own store.
  `start_nats_cluster(root)` starts several, routed into one JetStream cluster.
- `settings`, `engine`, `nc`, `js`: wired to the above, every interval at millisecond scale.
- `run_service(spec)`: a service app with its lifespan running, and an httpx client to it.

Size: one job, the shared pytest plugin; each fixture is short, and the servers they start
(Postgres, NATS, a cluster, child processes) must live in the module pytest loads.
"""

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import nats
import pytest
from fastapi import FastAPI
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import (
    auth,
    backups,
    db,
    embedded,
    messaging,
    metering,
    migrations,
    natsauth,
    task_traces,
)
from agentcom_common.contracts.task import TaskView
from agentcom_common.service import AnySpec, ServiceSpec, create_app
from agentcom_common.settings import CommonSettings

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def shared_tmpdir(prefix: str) -> Path:
    """A temp dir other accounts can enter: Postgres runs as its own account when we are root."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def task_view(**fields: Any) -> TaskView:
    """A `TaskView` as the queue would send it, with `fields` (in their JSON form) over plain
    defaults: for tests that hand a sidecar or an executor a task of their own."""
    now = datetime.now(UTC).isoformat()
    body: dict[str, Any] = {
        "id": "task-0000000000000001",
        "state": "assigned",
        "priority": "normal",
        "description": "x",
        "generation": 1,
        "retry_count": 0,
        "max_retries": 3,
        "assigned_to": None,
        "complete_by": None,
        "needed_capabilities": [],
        "repo": None,
        "branch": None,
        "file_hints": [],
        "success_criteria": [],
        "verification_steps": [],
        "complexity": {
            "tier": "standard",
            "source": "inferred",
            "inferred_tier": "standard",
            "confidence": 0.5,
            "reasons": [],
        },
        "depends_on": [],
        "goal_id": None,
        "metadata": {},
        "last_error": None,
        "blocked_reason": None,
        "result": None,
        "created_at": now,
        "updated_at": now,
    }
    return TaskView.model_validate(body | fields)


async def eventually(
    check: Callable[[], Awaitable[T]], *, timeout: float = 10.0, pause: float = 0.02
) -> T:
    """Retry `check` until it returns without AssertionError, or re-raise after `timeout` s."""
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if loop.time() >= stop_at:
                raise
            await asyncio.sleep(pause)


@dataclass(frozen=True, slots=True)
class PgServer:
    host: str  # a socket directory or a host name
    port: int
    user: str
    password: str | None

    def url(self, database: str) -> str:
        auth_part = self.user + (f":{self.password}" if self.password else "")
        if self.host.startswith("/"):
            return f"postgresql://{auth_part}@/{database}?host={self.host}&port={self.port}"
        return f"postgresql://{auth_part}@{self.host}:{self.port}/{database}"

    async def admin(self) -> Any:
        """A raw asyncpg connection to the `postgres` database (asyncpg ships no stubs)."""
        connect: Any = asyncpg.connect  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # asyncpg: no stubs
        return await connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database="postgres",
        )


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    external = os.environ.get("AGENTCOM_TEST_DATABASE_URL")
    if external:
        from sqlalchemy.engine import make_url

        url = make_url(external)
        yield PgServer(
            url.host or "127.0.0.1", url.port or 5432, url.username or "postgres", url.password
        )
        return
    root = shared_tmpdir("agentcom-pg-")
    layout = embedded.PostgresLayout(
        data_dir=root / "data", socket_dir=root / "run", port=free_port()
    )
    try:
        with embedded.postgres_running(layout, root / "postgres.log", fast=True, stop_timeout=20):
            asyncio.run(embedded.wait_for_postgres(layout, deadline=60))
            yield PgServer(str(layout.socket_dir), layout.port, layout.user, None)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def migration_sets() -> list[tuple[Path, str]]:
    """(script location, schema) of auth, of the backup record and of every installed service."""
    found = [(auth.MIGRATIONS, auth.SCHEMA), (backups.MIGRATIONS, backups.SCHEMA)]
    for point in entry_points(group="agentcom.services"):
        spec = point.load()
        assert isinstance(spec, ServiceSpec)
        found.append((spec.migrations, spec.schema))
    return found


@pytest.fixture(scope="session")
async def pg_template(pg_server: PgServer) -> AsyncIterator[str]:
    name = f"tmpl_{uuid.uuid4().hex[:12]}"
    conn = await pg_server.admin()
    await conn.execute(f'CREATE DATABASE "{name}"')
    engine = db.create_engine(CommonSettings(database_url=SecretStr(pg_server.url(name))))
    try:
        for location, schema in migration_sets():
            await migrations.upgrade(engine, location, schema)
    finally:
        await engine.dispose()
    try:
        yield name
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


@pytest.fixture
async def db_url(pg_server: PgServer, pg_template: str) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await pg_server.admin()
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
        yield pg_server.url(name)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@dataclass(frozen=True, slots=True)
class NatsServer:
    url: str  # with the hub user's credentials: what services connect with
    process: subprocess.Popen[bytes]
    store: Path
    auth: natsauth.ServerAuth
    address: str  # nats://127.0.0.1:port, no credentials: what an agent is given

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _spawn_nats(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(embedded.nats_server_binary()), "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=embedded.die_with_parent,
    )


def start_nats(
    store: Path, port: int | None = None, server_auth: natsauth.ServerAuth | None = None
) -> NatsServer:
    """A nats-server with JetStream and auth on (hub user + the scheduler's auth callout)."""
    chosen = port is None
    for _ in range(3 if chosen else 1):
        server = _try_nats(store, port or free_port(), server_auth)
        if server is not None:
            return server
    raise RuntimeError(f"nats-server did not start on {'a free port' if chosen else port}")


def _try_nats(store: Path, port: int, server_auth: natsauth.ServerAuth | None) -> NatsServer | None:
    """Start one on `port`; None when another process answers there (a free port taken by
    someone else between `free_port` and the bind: it was ours to test against otherwise)."""
    server_auth = server_auth or natsauth.ServerAuth.generate()
    store.mkdir(parents=True, exist_ok=True)
    # the name proves the listener is this server (the same for a restart on this store)
    name = f"agentcom-test-{port}-{hashlib.sha256(str(store).encode()).hexdigest()[:12]}"
    config = store.parent / f"nats-{port}.conf"
    config.write_text(
        f'listen: "127.0.0.1:{port}"\nserver_name: "{name}"\n'
        f'jetstream {{\n  store_dir: "{store}"\n}}\n' + server_auth.config()
    )
    process = _spawn_nats(config)
    address = f"nats://127.0.0.1:{port}"
    server = NatsServer(server_auth.hub_url(address), process, store, server_auth, address)
    stop_at = time.monotonic() + 10
    while time.monotonic() < stop_at and process.poll() is None:
        with contextlib.suppress(OSError, ValueError):
            if _server_name(port) == name:
                return server
            server.stop()  # someone else's server holds the port
            return None
        time.sleep(0.01)
    server.stop()
    return None


def _server_name(port: int) -> str:
    """The `server_name` in the INFO line a NATS server sends first on a new connection."""
    with socket.create_connection(("127.0.0.1", port), 0.5) as conn:
        conn.settimeout(2)
        line = conn.makefile("rb").readline(65536)
    kind, _, body = line.partition(b" ")
    if kind != b"INFO":
        raise ValueError(f"not a NATS server on port {port}")
    return str(json.loads(body).get("server_name", ""))


def start_nats_cluster(
    root: Path, size: int = 2, server_auth: natsauth.ServerAuth | None = None
) -> list[NatsServer]:
    """`size` nats-servers routed into one JetStream cluster, each with the same auth config
    as `start_nats` (hub user, auth callout, system account), its own client port, server
    name and store. Returns once every node reports JetStream healthy (a meta leader elected).
    """
    server_auth = server_auth or natsauth.ServerAuth.generate()
    ports = [(free_port(), free_port(), free_port()) for _ in range(size)]  # client, route, http
    servers: list[NatsServer] = []
    try:
        for index, (port, route, http) in enumerate(ports):
            store = root / f"node{index + 1}" / "js"
            store.mkdir(parents=True, exist_ok=True)
            routes = ", ".join(f"nats-route://127.0.0.1:{r}" for _, r, _ in ports if r != route)
            config = store.parent / "nats.conf"
            config.write_text(
                f"server_name: node{index + 1}\n"
                f'listen: "127.0.0.1:{port}"\n'
                f'http: "127.0.0.1:{http}"\n'
                f'cluster {{\n  name: agentcom-test\n  listen: "127.0.0.1:{route}"\n'
                f"  routes: [ {routes} ]\n}}\n"
                f'jetstream {{\n  store_dir: "{store}"\n}}\n' + server_auth.config()
            )
            process = _spawn_nats(config)
            address = f"nats://127.0.0.1:{port}"
            servers.append(
                NatsServer(server_auth.hub_url(address), process, store, server_auth, address)
            )
        stop_at = time.monotonic() + 30
        waiting = list(zip(servers, ports, strict=True))
        while waiting:
            server, (port, _, http) = waiting[0]
            if server.process.poll() is not None or time.monotonic() > stop_at:
                raise RuntimeError(f"nats-server on port {port} did not join its cluster")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{http}/healthz", timeout=1).status_code == 200:
                    waiting.pop(0)
                    continue
            time.sleep(0.05)
        return servers
    except BaseException:
        for server in servers:
            server.stop()
        raise


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = start_nats(tmp_path / "js")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def meters() -> None:
    """The process's meter provider with its scrape reader, so an in-process service's
    `/metrics` shows what it recorded. Session-wide: OTel takes one provider per process, and
    counters add up across tests (assert on differences)."""
    metering.install(Resource.create({"service.name": "agentcom-tests"}))


@pytest.fixture(scope="session")
def spans() -> InMemorySpanExporter:
    """The process's tracer provider, keeping every finished span in memory (session-wide:
    OTel takes one provider per process; find a test's spans by its own trace id)."""
    exporter = InMemorySpanExporter()
    provider = task_traces.Provider(
        resource=Resource.create({"service.name": "agentcom-tests"}),
        id_generator=task_traces.TaskIds(),
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` in Prometheus text whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        metric_name, _, rest = series.partition("{")
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', rest))
        if metric_name == name and all(found.get(k) == v for k, v in labels.items()):
            total += float(value)
    return total


@pytest.fixture
def settings(nats_server: NatsServer, db_url: str, tmp_path: Path) -> CommonSettings:
    return CommonSettings(
        home=tmp_path / "home",
        nats_url=nats_server.url,
        database_url=SecretStr(db_url),
        outbox_interval=timedelta(milliseconds=50),
        auth_cache_ttl=timedelta(milliseconds=200),
        nats_reconnect_wait=timedelta(milliseconds=50),
        ready_timeout=timedelta(seconds=1),
        metrics_sample_interval=timedelta(milliseconds=100),
    )


@pytest.fixture
async def engine(settings: CommonSettings) -> AsyncIterator[AsyncEngine]:
    made = db.create_engine(settings)
    try:
        yield made
    finally:
        await made.dispose()


@pytest.fixture
async def nc(settings: CommonSettings) -> AsyncIterator[Client]:
    client = await nats.connect(settings.nats_url or "")  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def js(nc: Client, settings: CommonSettings) -> JetStreamContext:
    context = nc.jetstream()  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
    await messaging.ensure_streams(context, settings)
    return context


@contextlib.asynccontextmanager
async def running(
    app: FastAPI, base_url: str = "http://service"
) -> AsyncGenerator[httpx.AsyncClient]:
    """Run `app`'s lifespan and hand out a client that calls it in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client


@pytest.fixture
def run_service(
    settings: CommonSettings,
) -> Callable[[AnySpec], contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]:
    def start(spec: AnySpec) -> contextlib.AbstractAsyncContextManager[httpx.AsyncClient]:
        return running(create_app(spec, settings), f"http://{spec.name}")

    return start


@pytest.fixture
async def admin_token(engine: AsyncEngine) -> str:
    return (await auth.issue(engine, auth.Role.ADMIN, "test admin")).token


class ChildProcess:
    """A real process of ours that a test may SIGKILL; its output goes to `log`."""

    def __init__(self, log: Path, stop_timeout: float = 15) -> None:
        self.log = log
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self, argv: list[str], env: dict[str, str]) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                argv, env=env, stdout=out, stderr=out, preexec_fn=embedded.die_with_parent
            )

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class ServiceProcess(ChildProcess):
    """A service as a real process (`python -m agentcom_<name>`), for tests that kill it."""

    def __init__(
        self,
        name: str,
        nats_url: str,
        db_url: str,
        log: Path,
        env: dict[str, str] | None = None,
        port_offset: int | None = None,
    ) -> None:
        # `port_offset`: another service's, so one AGENTCOM_PORT_OFFSET reaches both (the CLI)
        offset = free_port() - CommonSettings().port(name) if port_offset is None else port_offset
        self.module = "agentcom_" + name.replace("-", "_")
        self.url = f"http://127.0.0.1:{CommonSettings(port_offset=offset).port(name)}"
        base = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCOM_")}
        self.env = (
            base
            | {
                "AGENTCOM_NATS_URL": nats_url,
                "AGENTCOM_DATABASE_URL": db_url,
                "AGENTCOM_PORT_OFFSET": str(offset),
                "AGENTCOM_OUTBOX_INTERVAL": "50ms",
            }
            | (env or {})
        )
        super().__init__(log)

    def start(self, deadline: float = 60) -> None:
        """Start and wait until /readyz answers 200."""
        self.spawn([sys.executable, "-m", self.module], self.env)
        assert self.process is not None
        stop_at = time.monotonic() + deadline
        while time.monotonic() < stop_at:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise AssertionError(f"{self.module} not ready in {deadline} s; see {self.log}")


async def assert_service_answers(
    start: Callable[[AnySpec], contextlib.AbstractAsyncContextManager[httpx.AsyncClient]],
    nc: Client,
    spec: AnySpec,
) -> None:
    """The contract every service keeps: ready over HTTP, pingable and healthy over NATS."""
    async with start(spec) as client:
        ready = await client.get("/readyz")
        ping = await nc.request(f"$SRV.PING.agentcom-{spec.name}", b"", timeout=5)
        health = await nc.request(f"agentcom.rpc.{spec.rpc}.health", b"{}", timeout=5)
    assert ready.status_code == 200, ready.text
    assert json.loads(ping.data)["name"] == f"agentcom-{spec.name}"
    assert json.loads(health.data)["service"] == spec.name


async def nats_login_refused(
    address: str, user: str | None = None, password: str | None = None
) -> str:
    """Try a NATS login that must fail; returns the error the server gave."""
    nc = Client()

    async def quiet(_exc: Exception) -> None:
        return None

    try:
        with pytest.raises(NatsError) as caught:
            await nc.connect(
                address,
                user=user,
                password=password,
                allow_reconnect=False,
                max_reconnect_attempts=0,
                # longer than the server's auth timeout (2 s), which ends an unanswered
                # callout with "Authorization Violation"; nats-py's own 2 s raced it
                connect_timeout=10,
                error_cb=quiet,
            )
    finally:
        await nc.close()
    return str(caught.value)
