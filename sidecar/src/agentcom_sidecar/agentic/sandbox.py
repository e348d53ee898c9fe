"""The sandbox: every path inside the workspace, every command contained.

Containment does not depend on recognising bad commands (the first loop's regex blocklist let
`rm -fr /` and `echo hi && curl …` through). Instead every command:
- runs with the workspace as its working directory, in a new session (its own process group),
  killed as a group on timeout, on too much output and when it ends (no lingering children);
- gets resource limits set in the child before exec (CPU seconds, address space, file size,
  no core dumps) and an environment with tokens, keys and passwords removed;
- with isolation on, runs in the namespace sandbox of `agentcom_sidecar.namespaces` (read-only
  system, writable workspace, read-only `.git`, hidden config and state), here without network.
"""

import asyncio
import contextlib
import functools
import logging
import os
import re
import resource
import signal
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from agentcom_sidecar import meters, namespaces
from agentcom_sidecar.agentic import output
from agentcom_sidecar.agentic.settings import AgenticSettings

log = logging.getLogger(__name__)

_SECRET_NAME: Final = re.compile(
    r"TOKEN|SECRET|PASSW|KEY|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE|AGENTCOM_|NATS_", re.I
)
_BASE_ENV: Final = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TZ")


class SandboxError(Exception):
    """A tool request the sandbox refuses; `code` goes into the observation."""

    def __init__(
        self, code: str, message: str, data: dict[str, Any] | None = None, truncated: bool = False
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        self.truncated = truncated

    @classmethod
    def with_output(cls, code: str, message: str, result: "CommandResult") -> "SandboxError":
        """A killed command: refused, but with what it printed before the kill."""
        return cls(code, message, data=result.data(), truncated=result.truncated)


@dataclass(frozen=True, slots=True)
class CommandResult:
    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool
    killed_for_output: bool
    truncated: bool
    output_bytes: int

    def data(self) -> dict[str, Any]:
        return {"exit_code": self.exit_code, "stdout": self.stdout, "stderr": self.stderr}


def scrub_env(env: Mapping[str, str]) -> dict[str, str]:
    """Drop every variable whose name looks like a credential (token, key, password, auth…)."""
    return {name: value for name, value in env.items() if not _SECRET_NAME.search(name)}


@functools.cache
def _warn_once() -> None:
    log.warning(
        "sandbox.no_namespaces",
        extra={"detail": "user namespaces unavailable; commands run without isolation"},
    )


@dataclass(slots=True)
class Sandbox:
    """One task workspace and the limits its tools run under."""

    workspace: Path
    settings: AgenticSettings
    env: Mapping[str, str] = field(default_factory=dict[str, str])
    hidden: Sequence[Path] = ()
    """Paths a command must not even read (the sidecar's config and state), hidden by tmpfs."""
    scratch: Path | None = None
    """HOME and TMPDIR without namespaces (with them a private tmpfs); else the workspace."""
    root: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = Path(os.path.realpath(self.workspace))

    @property
    def isolated(self) -> bool:
        mode = self.settings.agentic_isolation
        if mode != "auto":
            return mode == "namespaces"
        available = namespaces.available()
        if not available:
            _warn_once()
        return available

    def resolve(self, path: str) -> Path:
        """The real path of `path` (relative to the workspace), refused unless it is inside.

        Every existing component is followed (symlinks included, parent directories too), so a
        symlinked folder pointing outside is caught even when the file itself does not exist yet.
        """
        if not path or "\x00" in path:
            raise SandboxError("invalid_path", "path must be a non-empty string without NUL")
        candidate = Path(path) if os.path.isabs(path) else self.root / path
        real = Path(os.path.realpath(candidate))
        if real != self.root and self.root not in real.parents:
            raise SandboxError(
                "path_outside_workspace",
                f"{path!r} resolves to {real}, outside the workspace; use a path inside it",
            )
        return real

    def relative(self, real: Path) -> str:
        return real.relative_to(self.root).as_posix() or "."

    def child_env(self) -> dict[str, str]:
        base = {name: os.environ[name] for name in _BASE_ENV if name in os.environ}
        env = {**base, **scrub_env(self.env)}
        env["GIT_TERMINAL_PROMPT"] = "0"
        if not self.isolated:  # isolated, the sandbox makes them its private /dev/shm
            scratch = str(self.scratch or self.root)
            env.update(HOME=scratch, TMPDIR=scratch)
        return env

    def argv_for(self, argv: Sequence[str]) -> list[str]:
        if not self.isolated:
            return list(argv)
        return namespaces.Confinement(tuple(self.hidden), network=False).argv(self.root, argv)

    def limit_resources(self) -> None:
        """Runs in the child between fork and exec, so the limits hold for all its children."""
        s = self.settings
        resource.setrlimit(resource.RLIMIT_CPU, (s.agentic_cpu_seconds, s.agentic_cpu_seconds))
        resource.setrlimit(resource.RLIMIT_AS, (s.agentic_memory_bytes, s.agentic_memory_bytes))
        size = s.agentic_file_size_bytes
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    async def run(self, argv: Sequence[str], timeout: float) -> CommandResult:
        """Run `argv` in the workspace; kill its whole process group when done or over limits."""
        started = asyncio.get_running_loop().time()
        proc = await asyncio.create_subprocess_exec(
            *self.argv_for(argv),
            cwd=self.root,
            env=self.child_env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            preexec_fn=self.limit_resources,
        )
        meter = output.Meter(kill_at=self.settings.agentic_output_kill)
        cap = self.settings.agentic_output_cap
        assert proc.stdout is not None
        assert proc.stderr is not None
        out, err = output.Captured(), output.Captured()
        readers = [
            asyncio.ensure_future(output.drain(proc.stdout, out, cap, meter)),
            asyncio.ensure_future(output.drain(proc.stderr, err, cap, meter)),
        ]
        try:
            finished = await _first(proc.wait(), meter.over.wait(), timeout)
        finally:
            _kill_group(proc.pid)  # also on cancel: no child outlives its tool call
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        exit_code = await proc.wait()
        await output.settle(readers)
        timed_out = not finished
        outcome = (
            "timeout"
            if timed_out
            else "output_limit"
            if meter.over.is_set()
            else "ok"
            if exit_code == 0
            else "failed"
        )
        elapsed = asyncio.get_running_loop().time() - started
        meters.count_command("agentic", self.isolated, outcome, elapsed)
        return CommandResult(
            exit_code=None if timed_out or meter.over.is_set() else exit_code,
            stdout=out.text(),
            stderr=err.text(),
            timed_out=timed_out,
            killed_for_output=meter.over.is_set(),
            truncated=out.truncated or err.truncated,
            output_bytes=meter.total,
        )


async def _first(exited: Awaitable[int], overflowed: Awaitable[bool], timeout: float) -> bool:
    """Wait for the process to exit or its output to overflow; False on timeout."""
    waiters = [asyncio.ensure_future(exited), asyncio.ensure_future(overflowed)]
    try:
        done, _ = await asyncio.wait(waiters, timeout=timeout, return_when="FIRST_COMPLETED")
    finally:
        for waiter in waiters:
            waiter.cancel()
    return bool(done)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
