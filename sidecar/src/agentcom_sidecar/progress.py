"""Progress: output lines coalesced into at most one bounded report per interval.

The first sidecar sent a frame per output chunk and the hub's rate limiter then dropped its
completions. Here progress is the only thing that is coalesced: each flush journals one
`Progress` report with at most `max_lines` lines (the newest; older ones count as
`dropped_lines`). Terminal reports never pass through here and are never delayed.
"""

import asyncio
import contextlib
from collections import deque

from agentcom_common.contracts.agent import Progress
from agentcom_sidecar.journal import Journal, dump

LINE_MAX = 4000


class ProgressBatcher:
    def __init__(
        self,
        journal: Journal,
        wake: asyncio.Event,
        agent_id: str,
        task_id: str,
        generation: int,
        *,
        interval: float,
        max_lines: int,
    ) -> None:
        self._journal, self._wake = journal, wake
        self._ids = (agent_id, task_id, generation)
        self._interval = interval
        self._lines: deque[str] = deque(maxlen=max_lines)
        self._dropped = 0
        self._seq = 0
        self.stage = "executing"
        self._task: asyncio.Task[None] | None = None

    async def add(self, line: str) -> None:
        if len(self._lines) == self._lines.maxlen:
            self._dropped += 1
        self._lines.append(line[:LINE_MAX])

    def flush(self) -> None:
        if not self._lines and not self._dropped:
            return
        agent_id, task_id, generation = self._ids
        report = Progress(
            kind="progress",
            agent_id=agent_id,
            task_id=task_id,
            generation=generation,
            seq=self._seq,
            stage=self.stage,
            lines=list(self._lines),
            dropped_lines=self._dropped,
        )
        self._seq += 1
        self._lines.clear()
        self._dropped = 0
        self._journal.add_report("progress", dump(report), task_id, generation)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.flush()

    async def __aenter__(self) -> "ProgressBatcher":
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.flush()
