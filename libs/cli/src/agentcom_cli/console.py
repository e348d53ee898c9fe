"""Where the CLI writes: tables to stdout, progress and errors to stderr, never a traceback."""

from collections.abc import Callable
from functools import wraps
from typing import NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console

from agentcom_common.embedded import EmbeddedError
from agentcom_common.errors import AgentcomError

out = Console()
err = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def friendly(command: Callable[P, R]) -> Callable[P, R]:
    """Turn our errors into one red line and exit 1 instead of a traceback."""

    @wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (AgentcomError, EmbeddedError) as exc:
            fail(str(exc))
        except OSError as exc:
            fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))

    return run
