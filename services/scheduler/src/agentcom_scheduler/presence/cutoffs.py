"""Cut-offs: a refused report counts against its agent; too many cut it off and kick it, in
the background."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_scheduler.presence.core import Gate

log = logging.getLogger("agentcom_scheduler.presence")  # one name for all of presence


def violation(
    engine: AsyncEngine, gate: Gate, on_cutoff: Callable[[str], Awaitable[None]] | None
) -> Callable[[Msg], None]:
    """Count a refused report against its agent; too many cut it off (and kick it)."""
    under_way: set[asyncio.Future[None]] = set()  # this consumer's counts (a task needs a ref)

    async def judge(speaker: str) -> None:
        limiter = gate.limiter
        if limiter is None:
            return
        try:
            cutoff = await limiter.violation(engine, speaker)
        except Exception:  # Postgres away: this one goes uncounted, the report is refused anyway
            log.exception("agent.violation_not_counted", extra={"agent_id": speaker})
            return
        if not cutoff:
            return
        log.warning("agent.cut_off", extra={"agent_id": speaker, "seconds": cutoff})
        if on_cutoff is not None:
            await on_cutoff(speaker)

    def count(msg: Msg) -> None:
        # in the background: counting is a Postgres statement, and kicking waits for every
        # NATS server's answer (a quarter second on a cluster), which the reports of other
        # agents must not wait for
        judging = asyncio.ensure_future(judge(msg.subject.split(".")[2]))
        under_way.add(judging)
        judging.add_done_callback(under_way.discard)

    return count
