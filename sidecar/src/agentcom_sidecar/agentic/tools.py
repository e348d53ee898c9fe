"""The five tools, each defined once: a pydantic model is both the schema and the validator.

`function_specs()` exports them in the Ollama / OpenAI function-calling format. `call()` runs
one and always returns an `Observation`, never raw text and never an exception: a bad argument,
a refused path, a failing command all become `ok=False` with an error code the model can read.
"""

import asyncio
import shlex
import shutil
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from agentcom_sidecar.agentic import files
from agentcom_sidecar.agentic.sandbox import Sandbox, SandboxError

Path_ = Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class ToolArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReadFile(ToolArgs):
    """Read a text file of the workspace, optionally only lines start_line..end_line."""

    path: Path_ = Field(description="Path relative to the workspace root.")
    start_line: int | None = Field(default=None, ge=1, description="First line (1-based).")
    end_line: int | None = Field(default=None, ge=1, description="Last line, inclusive.")


class WriteFile(ToolArgs):
    """Write a whole file (created with its folders, or replaced)."""

    path: Path_ = Field(description="Path relative to the workspace root.")
    content: str = Field(description="The complete new content of the file.")


class ListDirectory(ToolArgs):
    """List a folder of the workspace: name, type and size of each entry."""

    path: Path_ = Field(default=".", description="Folder relative to the workspace root.")
    recursive: bool = Field(default=False, description="Descend into sub-folders (depth 5).")
    pattern: str | None = Field(default=None, description="Glob on entry names, e.g. *.py.")


class RunCommand(ToolArgs):
    """Run a command in the workspace (tests, builds); no network; returns exit code and output."""

    command: list[Annotated[str, StringConstraints(max_length=10_000)]] | str = Field(
        description='An argv list such as ["python", "-m", "pytest", "-q"], or one shell string.',
        min_length=1,
    )
    timeout_s: float | None = Field(default=None, gt=0, description="Seconds before it is killed.")


class SearchFiles(ToolArgs):
    """Search the workspace's text files for a regular expression."""

    pattern: str = Field(min_length=1, max_length=1000, description="Python regular expression.")
    path: Path_ = Field(default=".", description="Folder to search, relative to the root.")
    file_pattern: str | None = Field(default=None, description="Glob on file names, e.g. *.py.")
    max_results: int = Field(default=50, ge=1, description="Most matches to return.")


class Observation(BaseModel):
    """What a tool call produced, as the model and the tool_call report see it."""

    model_config = ConfigDict(frozen=True)

    tool: str
    ok: bool
    data: dict[str, Any] | None = None
    error_code: str | None = None
    error: str | None = None
    truncated: bool = False
    duration_ms: float = 0.0


Handler = Callable[[Any, Sandbox], Coroutine[Any, Any, dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    args: type[ToolArgs]
    handler: Handler


async def _run_command(args: RunCommand, sandbox: Sandbox) -> dict[str, Any]:
    settings = sandbox.settings
    if isinstance(args.command, str):
        if settings.agentic_allow_shell:
            argv = ["/bin/sh", "-c", args.command]
        else:
            try:
                argv = shlex.split(args.command)
            except ValueError as exc:
                raise SandboxError("invalid_command", f"command: {exc}") from None
    else:
        argv = list(args.command)
    if not argv or not argv[0]:
        raise SandboxError("invalid_command", "command: give at least the program name")
    if "/" not in argv[0] and shutil.which(argv[0], path=sandbox.child_env().get("PATH")) is None:
        # checked here so the answer is the same with or without the namespace wrapper
        raise SandboxError("command_not_found", f"command: {argv[0]} is not on PATH")
    default = settings.agentic_command_timeout.total_seconds()
    ceiling = settings.agentic_command_timeout_max.total_seconds()
    timeout = min(args.timeout_s or default, ceiling)
    try:
        result = await sandbox.run(argv, timeout)
    except (FileNotFoundError, PermissionError) as exc:
        raise SandboxError("command_not_found", f"{argv[0]}: {exc.strerror}") from None
    if result.timed_out:
        raise SandboxError.with_output(
            "timeout", f"killed after {timeout:g} s with all its processes", result
        )
    if result.killed_for_output:
        raise SandboxError.with_output(
            "output_limit", f"killed after {result.output_bytes} bytes of output", result
        )
    return {**result.data(), "truncated": result.truncated}


TOOLS: Final[Mapping[str, Tool]] = {
    "read_file": Tool("read_file", ReadFile, files.read_file),
    "write_file": Tool("write_file", WriteFile, files.write_file),
    "list_directory": Tool("list_directory", ListDirectory, files.list_directory),
    "run_command": Tool("run_command", RunCommand, _run_command),
    "search_files": Tool("search_files", SearchFiles, files.search_files),
}


def function_specs() -> list[dict[str, Any]]:
    """The tools in Ollama / OpenAI function-calling JSON: `{type, function: {name, …}}`."""
    specs: list[dict[str, Any]] = []
    for tool in TOOLS.values():
        schema = tool.args.model_json_schema()
        schema.pop("title", None)
        description = schema.pop("description", "")
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        specs.append(
            {
                "type": "function",
                "function": {"name": tool.name, "description": description, "parameters": schema},
            }
        )
    return specs


async def call(name: str, arguments: Mapping[str, Any], sandbox: Sandbox) -> Observation:
    """Validate and run one tool call; every failure is an observation with an error code."""
    started = time.perf_counter()

    def observe(**fields: Any) -> Observation:
        elapsed = (time.perf_counter() - started) * 1000
        return Observation(tool=name, duration_ms=round(elapsed, 3), **fields)

    tool = TOOLS.get(name)
    if tool is None:
        known = ", ".join(TOOLS)
        return observe(ok=False, error_code="unknown_tool", error=f"no tool {name!r}; use {known}")
    try:
        args = tool.args.model_validate(dict(arguments))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "arguments"
        return observe(ok=False, error_code="invalid_argument", error=f"{where}: {first['msg']}")
    try:
        data = await tool.handler(args, sandbox)
    except SandboxError as exc:
        return observe(
            ok=False, error_code=exc.code, error=exc.message, data=exc.data, truncated=exc.truncated
        )
    except asyncio.CancelledError:
        raise
    except OSError as exc:
        return observe(ok=False, error_code="os_error", error=f"{exc.strerror or exc}")
    truncated = bool(data.pop("truncated", False))
    return observe(ok=True, data=data, truncated=truncated)
