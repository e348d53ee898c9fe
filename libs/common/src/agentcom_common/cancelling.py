"""Stopping asyncio tasks for good.

Cancelling once is not enough on Python 3.11: `asyncio.wait_for` (which nats-py's request and
fetch use) swallows a cancel that lands as its future completes, and a loop around it carries
on as if nothing happened. A scheduler stopped that way went on matching against a dropped
database every 50 ms in the tests, and a sidecar's inbox loop kept its process from stopping.
"""

import asyncio
from collections.abc import Collection


async def cancel_and_wait(
    tasks: Collection[asyncio.Task[object]], grace: float = 5.0, again: float = 0.25
) -> set[asyncio.Task[object]]:
    """Cancel `tasks`, and again every `again` s while one runs on; returns those still running
    after `grace` s (the caller logs them; they are not awaited)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    stuck = set(tasks)
    while stuck:
        for task in stuck:
            task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            break
        _, stuck = await asyncio.wait(stuck, timeout=min(again, left))
    return stuck


async def woken(event: asyncio.Event, timeout: float) -> bool:
    """Wait up to `timeout` s for `event`; True if it was set. The loops' one way to sleep until
    woken: `asyncio.timeout`, never `wait_for`, so a stop's cancel always ends the loop (a hub
    brain that swallowed it went on moving the hub after its replica had shut down)."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
