"""`agentcom up`: the whole stack as child processes of one command."""

import asyncio
import contextlib
import fcntl
import os
import signal
import sys
import time
from collections.abc import Generator
from datetime import timedelta
from pathlib import Path
from typing import IO

from agentcom_cli import dumps, probes, stack, tokens
from agentcom_cli.console import aligned, err, fail, out
from agentcom_cli.supervisor import Child, Supervisor
from agentcom_common import embedded, natsauth, ports
from agentcom_common.settings import SERVICE_NAMES, CommonSettings

READY_DEADLINE = 90.0


def natsauth_path(home: Path) -> Path:
    """The embedded NATS server's hub password and callout issuer seed (mode 0600)."""
    return home / "nats-auth.json"


def module_of(service: str) -> str:
    return "agentcom_" + service.replace("-", "_")


@contextlib.contextmanager
def exclusive(home: Path, busy: str = "see `agentcom status`") -> Generator[None]:
    """One `agentcom up` (or restore) per home directory; a second one says who holds it and
    what to do (`busy`)."""
    lock_path = home / "up.lock"
    handle: IO[str] = lock_path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        fail(f"a stack is already running from {home} (pid {holder}); {busy}")
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    try:
        yield
    finally:
        handle.close()


def run(settings: CommonSettings, replicas: int = 1) -> None:
    highest = ports.replica_port(SERVICE_NAMES[-1], settings.port_offset, replicas)
    if highest > 65535:
        fail(f"--replicas {replicas} with port offset {settings.port_offset} needs port {highest}")
    home = settings.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o755)  # the Postgres account must reach its data dir inside; secrets are 0600
    with exclusive(home):
        asyncio.run(_up(settings.model_copy(update={"home": home}), replicas))


def replica_urls(settings: CommonSettings, replicas: int) -> dict[str, tuple[str, int]]:
    """Every process `up` runs, by name (`queue`, `queue-2`...): its service and HTTP port."""
    return {
        ports.replica_name(name, k): (name, ports.replica_port(name, settings.port_offset, k))
        for name in SERVICE_NAMES
        for k in range(1, replicas + 1)
    }


class Steps:
    """One stderr line per part as it comes up, with how long it took: `up` used to print
    nothing for 16 to 38 s and then everything at once."""

    def __init__(self) -> None:
        self.began = time.monotonic()

    def done(self, part: str, what: str, since: float) -> None:
        err().print(f"  {part:<13} {what:<26} {time.monotonic() - since:5.1f} s", soft_wrap=True)

    def total(self) -> float:
        return time.monotonic() - self.began


async def _up(settings: CommonSettings, replicas: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    written: list[bool] = []  # the stack file exists once every service was ready
    processes = replica_urls(settings, replicas)
    urls = {name: f"http://{settings.public_host}:{port}" for name, (_, port) in processes.items()}

    def refresh_stack() -> None:  # a restarted child has a new pid; keep stack.json true
        if written:
            _write_stack(settings, env, supervisor, urls, logs)

    supervisor = Supervisor(
        notify=lambda line: err().print(line, style="yellow", soft_wrap=True),
        on_restart=refresh_stack,
    )
    env: dict[str, str] = {}
    logs = settings.home / "logs"
    backups: asyncio.Task[None] | None = None
    steps = Steps()
    err().print(f"starting AgentCom in {settings.home}", soft_wrap=True)
    try:
        env.update(await _start_servers(settings, supervisor, logs, steps))
        since = time.monotonic()
        await tokens.bootstrap_admin(settings.model_copy(update=_urls(env)))
        steps.done("admin token", f"in {settings.admin_token_path.name}", since)
        since = time.monotonic()
        for name, (service, port) in processes.items():
            # the first replica keeps the port its settings give it; the others are told theirs
            own = env if name == service else env | {"AGENTCOM_HTTP_PORT": str(port)}
            await supervisor.start(
                Child(name, [sys.executable, "-m", module_of(service)], own, logs / f"{name}.log")
            )
        waiting = asyncio.create_task(
            probes.wait_ready(urls, READY_DEADLINE, lambda p: steps.done(p.part, "ready", since))
        )
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not waiting.done():  # Ctrl-C while starting
            waiting.cancel()
            return
        ready = waiting.result()
        _print_table(settings, env, ready, logs, steps.total())
        _write_stack(settings, env, supervisor, urls, logs)
        written.append(True)
        if settings.backup_interval > timedelta(0):
            backups = asyncio.create_task(
                dumps.scheduled(
                    env["AGENTCOM_DATABASE_URL"],
                    settings.home,
                    settings.backup_interval,
                    settings.backup_keep,
                    notify=lambda line: err().print(line, style="red"),
                ),
                name="backups",
            )
        if not all(part.ok for part in ready.values()):
            err().print(f"some services are not ready; see their logs under {logs}", style="red")
        else:
            out().print(f"next, in another terminal: {await _next_command(settings)}")
        err().print("Ctrl-C stops everything", style="dim")
        await stop.wait()
    finally:
        err().print("stopping…")
        if backups is not None:  # before Postgres stops: a dump in progress is dropped
            backups.cancel()
            await asyncio.wait({backups})  # never raises: the stop below must run
        await supervisor.stop(
            [list(processes), ["nats", "postgres"]],
            grace=settings.shutdown_grace.total_seconds(),
        )
        stack.remove(settings.home)
        err().print("stopped")


def _urls(env: dict[str, str]) -> dict[str, object]:
    from pydantic import SecretStr

    return {
        "nats_url": env["AGENTCOM_NATS_URL"],
        "database_url": SecretStr(env["AGENTCOM_DATABASE_URL"]),
    }


async def _start_servers(
    settings: CommonSettings, supervisor: Supervisor, logs: Path, steps: Steps
) -> dict[str, str]:
    """Start embedded NATS and Postgres unless URLs are given; return the services' env."""
    env = dict(os.environ)
    env["AGENTCOM_HOME"] = str(settings.home)
    env["AGENTCOM_PORT_OFFSET"] = str(settings.port_offset)
    env["PYTHONUNBUFFERED"] = "1"
    if settings.nats_url:
        env["AGENTCOM_NATS_URL"] = settings.nats_url
        err().print(f"  {'nats':<13} given: {natsauth.redact(settings.nats_url)}", soft_wrap=True)
    else:
        env |= await _start_nats(settings, supervisor, logs, steps)
    if settings.database_url:
        env["AGENTCOM_DATABASE_URL"] = settings.database_url.get_secret_value()
        err().print(f"  {'postgres':<13} given by AGENTCOM_DATABASE_URL", soft_wrap=True)
    else:
        env["AGENTCOM_DATABASE_URL"] = await _start_postgres(settings, supervisor, logs, steps)
    return env


async def _start_nats(
    settings: CommonSettings, supervisor: Supervisor, logs: Path, steps: Steps
) -> dict[str, str]:
    since = time.monotonic()
    nats = embedded.NatsLayout(
        store_dir=settings.home / "nats",
        config=settings.home / "nats.conf",
        port=settings.nats_client_port,
        monitor_port=settings.nats_http_port,
    )
    # auth on: services log in as the hub user, agents through the scheduler's callout
    server_auth = natsauth.ServerAuth.load_or_create(natsauth_path(settings.home))
    command = embedded.nats_command(nats, server_auth)
    await supervisor.start(Child("nats", command, os.environ.copy(), logs / "nats.log"))
    if not await probes.port_open(nats.host, nats.port, deadline=30):
        fail(f"nats-server did not listen on {nats.url} within 30 s; see {logs / 'nats.log'}")
    steps.done("nats", f"listening on :{nats.port}", since)
    return {
        "AGENTCOM_NATS_URL": server_auth.hub_url(nats.url),
        "AGENTCOM_SCHEDULER_NATS_ISSUER_SEED": server_auth.issuer_seed,
        "AGENTCOM_NATS_MONITOR_URL": nats.monitor_url,
    }


async def _start_postgres(
    settings: CommonSettings, supervisor: Supervisor, logs: Path, steps: Steps
) -> str:
    since = time.monotonic()
    pg = embedded.PostgresLayout(
        data_dir=settings.home / "postgres",
        socket_dir=embedded.socket_dir_for(settings.home),
        port=settings.postgres_socket_port,
    )
    first = not (pg.data_dir / "PG_VERSION").exists()
    command = await asyncio.to_thread(embedded.prepare_postgres, pg)
    if first:
        steps.done("postgres", "created its data directory", since)
    await supervisor.start(
        Child(
            "postgres",
            command,
            os.environ.copy(),
            logs / "postgres.log",
            stop_signal=signal.SIGINT,  # "fast" shutdown: roll back clients, checkpoint, exit
            user=embedded.os_user(),
        )
    )
    await embedded.wait_for_postgres(pg, deadline=60)
    await embedded.create_database(pg)
    steps.done("postgres", "accepting connections", since)
    return pg.url


async def _next_command(settings: CommonSettings) -> str:
    """The first step of docs/getting-started.md not yet done: a repo, then an agent, then a
    task. Asked of the stack just started; if it cannot say, the first step."""
    import httpx

    token = tokens.read_token(settings)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with httpx.AsyncClient(timeout=5, headers=headers) as client:
            repos = (await client.get(settings.service_url("queue") + "/api/repos")).json()
            agents = (await client.get(settings.service_url("scheduler") + "/api/agents")).json()
    except (httpx.HTTPError, ValueError):
        repos, agents = [], []
    if not repos:
        return "agentcom repo add /path/to/your/repo"
    if not agents:
        return "agentcom agent add builder --allow-hub-commands --executor shell"
    return 'agentcom task submit "what to do" --command "make test" --check test_passes:"make test"'


def _print_table(
    settings: CommonSettings,
    env: dict[str, str],
    ready: dict[str, probes.PartStatus],
    logs: Path,
    took: float,
) -> None:
    out().print(f"AgentCom is up ({took:.1f} s)")
    rows = [("part", "state", "url")]
    rows += [(name, "ready" if p.ok else p.detail, p.url) for name, p in ready.items()]
    rows.append(("nats", "running", natsauth.redact(env["AGENTCOM_NATS_URL"])))
    rows.append(("postgres", "running", _shown_db(env["AGENTCOM_DATABASE_URL"])))
    aligned(rows)
    out().print(f"dashboard: {settings.service_url('dashboard')}", soft_wrap=True)
    out().print("API docs: each service's URL + /docs    logs: " + str(logs), soft_wrap=True)
    out().print("admin token: `agentcom token`   health: `agentcom status`")


def _shown_db(url: str) -> str:
    """The URL as given (copyable: `psql` takes it), its password, if any, starred out."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    login, _, host = parts.netloc.rpartition("@")
    user = login.partition(":")[0]
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, ""))


def _write_stack(
    settings: CommonSettings,
    env: dict[str, str],
    supervisor: Supervisor,
    urls: dict[str, str],
    logs: Path,
) -> None:
    embedded_db = None if settings.database_url else env["AGENTCOM_DATABASE_URL"]
    stack.write(
        settings.home,
        stack.StackFile(
            pid=os.getpid(),
            port_offset=settings.port_offset,
            nats_url=natsauth.strip_credentials(env["AGENTCOM_NATS_URL"]),
            nats_monitor_url=env.get("AGENTCOM_NATS_MONITOR_URL"),
            database_url=embedded_db,
            services=urls,
            children={c.name: c.pid for c in supervisor.children if c.pid is not None},
            logs=str(logs),
        ),
    )
