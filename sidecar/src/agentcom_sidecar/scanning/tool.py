"""Running a scanner's binary (ruff, pyright): its own process group, stdin closed, a deadline
that kills the whole group, its stdout returned (bounded) when it exits with an expected code;
any other end is the scanner's `SkippedError`, with the tool's own words."""

import asyncio
import contextlib
import os
import signal
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Final

from agentcom_sidecar.scanning.findings import SkippedError

MAX_OUTPUT: Final = 20_000_000


async def run(
    name: str,
    argv: list[str],
    cwd: Path,
    env: Mapping[str, str],
    *,
    timeout: float,
    ok: Collection[int] = (0,),
) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise SkippedError(f"{name} took longer than {timeout:g} s") from None
    except BaseException:  # a cancel: the whole group goes
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise
    with contextlib.suppress(ProcessLookupError):  # anything it left running goes with it
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.returncode not in ok:
        said = (err or out).decode(errors="replace").strip()[-300:]
        raise SkippedError(f"{name} exited {proc.returncode}: {said}")
    return out[:MAX_OUTPUT]
