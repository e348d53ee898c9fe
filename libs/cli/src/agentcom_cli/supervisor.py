"""Child processes of `agentcom up`: start, watch, restart with backoff, stop in order.

Each child runs in its own process group, so a Ctrl-C in the terminal reaches only us and we
stop the children in order (services first, then NATS and Postgres). Each child also asks Linux
to signal it when we die, so even a `kill -9` of `agentcom up` leaves no orphan behind.
"""

import asyncio
import contextlib
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO

from agentcom_common.embedded import die_with_parent


@dataclass(frozen=True, slots=True)
class Backoff:
    first: float = 0.25
    factor: float = 2.0
    most: float = 10.0
    stable_after: float = 30.0  # a child up this long starts the backoff afresh

    def delay(self, restarts: int) -> float:
        return min(self.most, self.first * self.factor ** max(0, restarts - 1))


@dataclass(slots=True)
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    stop_signal: signal.Signals = signal.SIGTERM
    user: str | None = None
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0
    log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None


Notify = Callable[[str], None]


class Supervisor:
    def __init__(
        self,
        notify: Notify,
        backoff: Backoff | None = None,
        on_restart: Callable[[], None] | None = None,
    ) -> None:
        self.on_restart = on_restart
        self.children: list[Child] = []
        self.notify = notify
        self.backoff = backoff or Backoff()
        self._stopping = False
        self._watchers: list[asyncio.Task[None]] = []

    async def start(self, child: Child) -> None:
        """Start `child` and keep it running until `stop()`."""
        self.children.append(child)
        await self._spawn(child)
        self._watchers.append(asyncio.create_task(self._watch(child), name=f"watch-{child.name}"))

    async def _spawn(self, child: Child) -> None:
        child.log_path.parent.mkdir(parents=True, exist_ok=True)
        if child.log_file is None:
            child.log_file = child.log_path.open("ab")
        loop = asyncio.get_running_loop()
        child.process = await asyncio.create_subprocess_exec(
            *child.argv,
            env=child.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=child.log_file,
            stderr=child.log_file,
            process_group=0,
            user=child.user,
            preexec_fn=partial(die_with_parent, child.stop_signal),
        )
        child.started_at = loop.time()

    async def _watch(self, child: Child) -> None:
        loop = asyncio.get_running_loop()
        while True:
            assert child.process is not None
            code = await child.process.wait()
            if self._stopping:
                return
            if loop.time() - child.started_at >= self.backoff.stable_after:
                child.restarts = 0
            child.restarts += 1
            delay = self.backoff.delay(child.restarts)
            self.notify(
                f"{child.name} exited with {_describe(code)}; restarting in {delay:.2f} s "
                f"(restart {child.restarts}, log {child.log_path})"
            )
            await asyncio.sleep(delay)
            if self._stopping:
                return
            await self._spawn(child)
            if self.on_restart is not None:
                self.on_restart()

    async def stop(self, groups: list[list[str]], grace: float) -> None:
        """Stop children group by group (each group in parallel); SIGKILL after `grace`."""
        self._stopping = True
        for watcher in self._watchers:
            watcher.cancel()
        by_name = {child.name: child for child in self.children}
        for group in groups:
            await asyncio.gather(
                *(self._stop_one(by_name[name], grace) for name in group if name in by_name)
            )
        for child in self.children:
            if child.log_file is not None:
                child.log_file.close()

    async def _stop_one(self, child: Child, grace: float) -> None:
        process = child.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(child.stop_signal)
        try:
            await asyncio.wait_for(process.wait(), timeout=grace)
        except TimeoutError:
            self.notify(f"{child.name} did not stop within {grace:.0f} s; killing it")
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"code {code}"
