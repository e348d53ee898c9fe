"""Child processes: argv lists only, their own process group, a deadline that kills the group.

Nothing here builds a shell string: a task's text reaches a child as an argv element, a file or
an environment variable, never as shell syntax. On the deadline (or a cancel) the whole group
gets SIGTERM, then SIGKILL after `grace`, so grandchildren (`sh -c`, test runners) stop too.
Output is read as it comes (for progress) and only a bounded tail is kept.
"""

import asyncio
import contextlib
import os
import re
import shutil
import signal
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from agentcom_common import embedded
from agentcom_sidecar import namespaces

TAIL_LINES: Final = 60
CHUNK: Final = 65536
LINE_MAX: Final = 4000
_SECRET_NAME = re.compile(r"(?i)(token|secret|passw|api[_-]?key|credential|auth|private)")
_DROP_PREFIXES: Final = ("AGENTCOM_", "NATS_", "GITHUB_", "GH_", "ANTHROPIC_", "OPENAI_", "AWS_")

LineSink = Callable[[str], Awaitable[None]]

_GATE: Final = 'read -r go && [ "$go" = go ] && exec "$@"'
"""What a child runs first when its caller journals its group: wait on stdin for `go` (`read`
takes no byte past the newline, so the command gets the rest). A child
runs (and may fork) before `create_subprocess_exec` returns to us, so a sidecar killed in
between left grandchildren in a group no journal named, and recovery could not stop them
(CI caught one). The caller journals the pgid, then opens the gate; if the sidecar dies first,
stdin reads EOF and nothing runs. A fixed script: the task's argv reaches it as "$@", never as
shell text."""


def scrubbed_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The sidecar's environment minus anything that looks like a credential."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not _SECRET_NAME.search(name) and not name.startswith(_DROP_PREFIXES)
    }
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env | dict(extra or {})


@dataclass(frozen=True, slots=True)
class Finished:
    exit_code: int | None
    """None when the process was killed at the deadline."""
    timed_out: bool
    tail: str


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    """Signal a process group if it still exists (after a crash it may be long gone)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _stop(process: asyncio.subprocess.Process, grace: float) -> None:
    kill_group(process.pid, signal.SIGTERM)
    try:
        async with asyncio.timeout(grace):
            await process.wait()
    except TimeoutError:
        pass
    kill_group(process.pid, signal.SIGKILL)
    await process.wait()


async def _pump(
    process: asyncio.subprocess.Process,
    stdin: bytes | None,
    tail: deque[str],
    on_line: LineSink | None,
) -> None:
    """Feed stdin, read output to the end in bounded lines, wait for the exit."""
    assert process.stdout is not None

    async def take(raw: bytes) -> None:
        line = raw.decode(errors="replace")[:LINE_MAX]
        tail.append(line)
        if on_line is not None:
            await on_line(line)

    if stdin is not None and process.stdin is not None:
        process.stdin.write(stdin)
        with contextlib.suppress(ConnectionError):
            await process.stdin.drain()
        process.stdin.close()
    partial = b""
    # chunks, not readline(): a line longer than the stream limit must not end the read
    while chunk := await process.stdout.read(CHUNK):
        *lines, partial = (partial + chunk).split(b"\n")
        if len(partial) > LINE_MAX * 4:  # an endless line: cut it into bounded pieces
            lines.append(partial)
            partial = b""
        for raw in lines:
            await take(raw)
    if partial:
        await take(partial)
    await process.wait()


def _found(program: str, cwd: Path, env: Mapping[str, str]) -> bool:
    """Whether exec would find `program`: a wrapped one is exec'd by sh, which would report a
    missing one as exit 127, so the caller would not get its FileNotFoundError."""
    if "/" in program:
        return os.access(cwd / program, os.X_OK)
    return shutil.which(program, path=env.get("PATH", os.defpath)) is not None


async def run(
    argv: Sequence[str],
    cwd: Path,
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    on_line: LineSink | None = None,
    on_start: Callable[[int], None] | None = None,
    grace: float = 5.0,
    stdin: bytes | None = None,
    confine: namespaces.Confinement | None = None,
) -> Finished:
    """Run `argv` in `cwd` until it exits or `timeout` s pass; stdout and stderr interleaved.

    Raises FileNotFoundError when argv[0] cannot be found. A cancel kills the group and re-raises.
    `on_start(pgid)` is called before the child runs anything of `argv` (see `_GATE`). With
    `confine`, `argv` runs in the namespace sandbox with `cwd` its only writable place.
    """
    child_env = dict(env) if env is not None else scrubbed_env()
    gated = on_start is not None
    command = list(argv)
    if (gated or confine is not None) and not _found(command[0], cwd, child_env):
        raise FileNotFoundError(f"no such command: {command[0]}")
    if confine is not None:
        command = confine.argv(cwd, command)
    if gated:
        # the gate outside `unshare`: the journaled group is unshare's, and nothing of the
        # sandbox (let alone of argv) starts before the gate opens
        command = ["/bin/sh", "-c", _GATE, "gate", *command]
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=cwd,
        env=child_env,
        stdin=asyncio.subprocess.PIPE if gated or stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group: the deadline kills grandchildren too
        preexec_fn=embedded.die_with_parent,
    )
    if on_start is not None:
        assert process.stdin is not None
        try:
            on_start(process.pid)
        except BaseException:
            await asyncio.shield(_stop(process, grace))  # unjournaled: it must not run on
            raise
        process.stdin.write(b"go\n")
        stdin = stdin or b""  # then what the command reads, then EOF, as /dev/null would give
    tail: deque[str] = deque(maxlen=TAIL_LINES)

    timed_out = False
    try:
        async with asyncio.timeout(timeout):
            await _pump(process, stdin, tail, on_line)
    except TimeoutError:
        timed_out = True
        await asyncio.shield(_stop(process, grace))
    except asyncio.CancelledError:
        await asyncio.shield(_stop(process, grace))
        raise
    finally:
        if process.returncode is None:
            await asyncio.shield(_stop(process, grace))
    # the leader exited; anything it left running in its group goes with it
    kill_group(process.pid)
    return Finished(None if timed_out else process.returncode, timed_out, "\n".join(tail))
