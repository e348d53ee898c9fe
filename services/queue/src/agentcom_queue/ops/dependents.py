"""Dependents: releasing or (un)blocking the waiting tasks of a task that just changed state,
in the caller's transaction, and the sweep that corrects what an event missed.
"""

from collections.abc import Sequence
from typing import Any, Final

from agentcom_common import telemetry
from agentcom_queue import states, store_batch
from agentcom_queue.ops.core import Queue, S

# states whose entry (or exit, for the BLOCKING ones: a retry) changes what dependents wait for
_SETTLES: Final = frozenset({S.COMPLETED, S.QUEUED, *states.BLOCKING})


async def settle_dependents(db: store_batch.Db, rows: Sequence[Any]) -> int:
    """Release or (un)block the waiting dependents of tasks that just changed state, in the
    caller's transaction: `store_batch.settle_dependents` is the one place that decides."""
    ids = sorted(row.id for row in rows if S(row.state) in _SETTLES)
    if not ids:
        return 0
    return await store_batch.settle_dependents(db, ids, telemetry.inject_headers())


async def sweep_dependencies(q: Queue, limit: int) -> tuple[int, int, int]:
    """One pass of the dependency sweep (one transaction): release waiting tasks whose
    dependencies all completed, and correct `blocked_reason`s, that an event missed.
    Returns (looked at, released, reasons changed)."""
    async with q.engine.begin() as conn:
        counts = await store_batch.sweep_dependents(conn, limit, telemetry.inject_headers())
    if counts[1] or counts[2]:
        q.relay.wake()
    return counts
