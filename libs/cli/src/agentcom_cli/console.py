"""Where the CLI writes: tables to stdout, progress and errors to stderr, never a traceback.

Messages are printed as plain text: rich's markup is off, so a name, a pattern or a URL with
square brackets in it reaches the terminal as it is (markup would have eaten `[a-z0-9-]`).
rich itself is imported on first use, because `agentcom --version` must start fast.
"""

import json
from collections.abc import Callable
from functools import cache, wraps
from typing import TYPE_CHECKING, Annotated, NoReturn, ParamSpec, TypeVar

import typer

from agentcom_common.errors import AgentcomError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
"""The `--json` flag every command has: the API's JSON instead of lines and tables."""

P = ParamSpec("P")
R = TypeVar("R")


@cache
def _console(stderr: bool) -> "Console":
    from rich.console import Console

    return Console(stderr=stderr, markup=False, highlight=False, emoji=False)


def out() -> "Console":
    """stdout: what a command answers (tables, JSON, ids)."""
    return _console(False)


def err() -> "Console":
    """stderr: progress, warnings and errors."""
    return _console(True)


def print_json(data: object) -> None:
    """Indented JSON on stdout, uncoloured (rich would cost 0.1 s of start-up to colour it)."""
    typer.echo(json.dumps(data, indent=2, default=str))


def json_line(data: object) -> None:
    """One JSON object on one line: what a `watch --json` prints per change."""
    typer.echo(json.dumps(data, default=str))


def line(text: str) -> None:
    """A line of a command's answer on stdout, never wrapped (so it can be copied whole)."""
    out().print(text, soft_wrap=True)


def id_table(*columns: str) -> "Table":
    """A table whose first column (an id) is never wrapped or cut, so it can be copied whole;
    the other columns give way on a narrow terminal."""
    from rich.table import Table

    table = Table()
    first, *rest = columns
    table.add_column(first, no_wrap=True, overflow="ignore", min_width=len(first))
    for column in rest:
        table.add_column(column, overflow="fold")
    return table


def aligned(rows: list[tuple[str, ...]], *, to_stderr: bool = False) -> None:
    """Rows in columns padded to their widest cell, the last column never cut nor wrapped.

    A rich table cannot promise that: on a narrow terminal it cuts or folds its last column,
    and that column is a URL someone copies (a Postgres URL is 80 characters alone). Here the
    first columns are short and the last runs on; the terminal wraps it, the text stays whole.
    """
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)] if rows else []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        typer.echo("  ".join([*cells, row[-1]]).rstrip(), err=to_stderr)


def fail(message: str, code: int = 1) -> NoReturn:
    from rich.text import Text

    # soft_wrap: one line however narrow the terminal, so it can be copied and grepped whole
    err().print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)
    raise typer.Exit(code)


def friendly(command: Callable[P, R]) -> Callable[P, R]:
    """Turn our errors into one red line and exit 1 instead of a traceback."""

    @wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except typer.Exit:
            raise
        except AgentcomError as exc:
            fail(str(exc))
        except OSError as exc:
            fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
        except Exception as exc:
            from agentcom_common.embedded import EmbeddedError  # only `up` and doctor raise it

            if isinstance(exc, EmbeddedError):
                fail(str(exc))
            raise

    return run
