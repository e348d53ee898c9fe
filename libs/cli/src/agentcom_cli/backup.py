"""`agentcom backup`, `agentcom backup list`, `agentcom restore FILE`.

Which Postgres: `AGENTCOM_DATABASE_URL` when set, else the embedded server of this home. A
backup of a stopped embedded stack starts its Postgres for the dump and stops it again; a
restore never runs beside a stack (the home's lock, or other sessions on an external database).
Imports stay inside the commands: `agentcom` must start fast.
"""

import contextlib
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from agentcom_cli.console import err, fail, friendly, id_table, out, print_json

if TYPE_CHECKING:
    from agentcom_common.settings import CommonSettings

backup_app = typer.Typer(
    help="Back up every AgentCom schema of Postgres now, or list the backups.",
    invoke_without_command=True,
)
JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _settings() -> "CommonSettings":
    from agentcom_common.settings import CommonSettings

    try:
        return CommonSettings()
    except ValueError as exc:
        fail(f"bad setting: {exc}")


@contextlib.asynccontextmanager
async def database(settings: "CommonSettings", *, purpose: str) -> AsyncGenerator[str]:
    """The URL of this stack's Postgres: the external one, the running embedded one, or the
    embedded one of a stopped stack, started for `purpose` and stopped again."""
    from agentcom_cli import stack, up
    from agentcom_common import embedded

    if settings.database_url is not None:
        yield settings.database_url.get_secret_value()
        return
    home = settings.home.resolve()
    running = stack.read(home)
    if running is not None and running.database_url and purpose != "restore":
        yield running.database_url
        return
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o755)  # as `agentcom up`: the Postgres account must reach its data dir
    busy = f"stop it first (Ctrl-C where `agentcom up` runs), then run `agentcom {purpose}` again"
    with up.exclusive(home, busy=busy):
        layout = embedded.PostgresLayout(
            data_dir=home / "postgres",
            socket_dir=embedded.socket_dir_for(home),
            port=settings.postgres_socket_port,
        )
        (home / "logs").mkdir(exist_ok=True)
        with embedded.postgres_running(layout, home / "logs" / "postgres.log"):
            await embedded.wait_for_postgres(layout, deadline=60)
            await embedded.create_database(layout)
            yield layout.url


async def _take(settings: "CommonSettings") -> "dict[str, object]":
    from agentcom_cli import dumps

    async with database(settings, purpose="backup") as url:
        made = await dumps.take(url, settings.home.resolve(), settings.backup_keep)
    return made.as_json()


@backup_app.callback(invoke_without_command=True)
@friendly
def backup(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Dump every AgentCom schema now to <home>/backups/ (pg_dump custom format), keeping the
    newest AGENTCOM_BACKUP_KEEP. `agentcom up` also does this every AGENTCOM_BACKUP_INTERVAL.

    Every attempt, ok or failed, is recorded in Postgres (`ops.backups`), where the dashboard
    reads it. Errors: `backup_failed` with pg_dump's own words (exit 1).
    """
    if ctx.invoked_subcommand is not None:
        return
    import asyncio

    from agentcom_cli import dumps

    settings = _settings()
    made = asyncio.run(_take(settings))
    last = dumps.last_result(settings.home.resolve()) or {}
    if as_json:
        print_json(made | {"recorded": last.get("recorded", False)})
    else:
        out().print(f"backup written: {made['file']} ({made['size']} bytes)")
    if not last.get("recorded", False):
        err().print(
            f"not recorded in Postgres (ops.backups): kept in {dumps.UNRECORDED} and recorded "
            "with the next backup that reaches it",
            style="yellow",
        )


@backup_app.command("list")
@friendly
def backup_list(as_json: JsonFlag = False) -> None:
    """List the backups of this home, newest first, and the result of the last attempt."""
    from agentcom_cli import dumps
    from agentcom_common import clock

    home = _settings().home.resolve()
    found = dumps.listed(home)
    if as_json:
        print_json({"backups": [d.as_json() for d in found], "last": dumps.last_result(home)})
        return
    table = id_table("file", "taken at", "age", "size")
    now = clock.now()
    for dump in found:
        age = str(dump.age(now)).split(".")[0]
        table.add_row(str(dump.path), dump.taken_at.isoformat(), age, f"{dump.size} bytes")
    out().print(table)
    last = dumps.last_result(home)
    if last is not None and not last["ok"]:
        err().print(f"the last backup failed at {last['at']}: {last['detail']}", style="red")


async def _restore(settings: "CommonSettings", file: Path) -> list[str]:
    from agentcom_cli import dumps

    await dumps.check(file)  # a bad file is refused before anything starts or stops
    async with database(settings, purpose="restore") as url:
        if settings.database_url is not None:
            await dumps.refuse_if_in_use(url)
        return await dumps.restore(file, url)


@friendly
def restore(
    file: Annotated[Path, typer.Argument(help="A dump from `agentcom backup list`.")],
    as_json: JsonFlag = False,
) -> None:
    """Replace every AgentCom schema with the dump FILE's, into a stopped stack.

    The dump is checked first (`pg_restore --list`) and loaded in one transaction: a failure
    leaves the database as it was. Refused while the stack runs (`stack_running`); a fresh
    home gets a new embedded Postgres. Start the stack again with `agentcom up`.
    """
    import asyncio

    restored = asyncio.run(_restore(_settings(), file.resolve()))
    if as_json:
        print_json({"file": str(file), "schemas": restored})
    else:
        out().print(f"restored {', '.join(restored)} from {file}; start it with `agentcom up`")
