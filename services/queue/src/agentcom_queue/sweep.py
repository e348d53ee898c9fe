"""The dependency sweep: events wake, sweeps guarantee.

A dependency's outcome settles its waiting dependents in its own transaction
(`store_batch.settle_dependents`). This loop repairs what that could not see: tasks left
`waiting` with every dependency completed (by the races fixed there and in
`store_batch.dependency_states`, in databases written before the fixes, or a waiting
dependency that was released, claimed and completed within one submit), and
`blocked_reason`s that no longer say what holds a task. Replicas
sweep side by side: each skips the tasks another transaction holds.
"""

import asyncio
import logging
from datetime import timedelta
from typing import Final

from agentcom_common.service import Loops
from agentcom_queue import ops

log = logging.getLogger(__name__)

BATCH: Final = 500  # tasks per transaction
MAX_BATCHES: Final = 100  # per pass; the rest waits for the next one


def start(loops: Loops, q: ops.Queue, every: timedelta) -> None:
    loops.spawn("dependency-sweep", forever(q, every))


async def forever(q: ops.Queue, every: timedelta) -> None:
    """A pass every `every` (the first one `every` after start)."""
    while True:
        await asyncio.sleep(every.total_seconds())
        try:
            await sweep(q)
        except Exception:  # Postgres away, say: the next pass tries again
            log.exception("sweep.dependencies_failed")


async def sweep(q: ops.Queue) -> tuple[int, int]:
    """Settle every waiting task that needs it, `BATCH` per transaction; (released, marked)."""
    released = marked = 0
    for _ in range(MAX_BATCHES):
        looked, moved, changed = await ops.sweep_dependencies(q, BATCH)
        released, marked = released + moved, marked + changed
        if looked < BATCH:
            break
    if released or marked:
        log.info("sweep.dependencies", extra={"released": released, "reasons_changed": marked})
    return released, marked
