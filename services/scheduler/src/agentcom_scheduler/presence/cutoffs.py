"""Cut-offs: a refused report counts against its agent; too many cut it off and kick it, in
the background."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg

from agentcom_scheduler.presence.core import Gate

log = logging.getLogger("agentcom_scheduler.presence")  # one name for all of presence

_cutoffs: set[asyncio.Future[None]] = set()  # kicks under way (a task needs a reference)


def violation(
    gate: Gate, on_cutoff: Callable[[str], Awaitable[None]] | None
) -> Callable[[Msg], None]:
    """Count a refused report against its agent; too many cut it off (and kick it)."""

    def count(msg: Msg) -> None:
        speaker = msg.subject.split(".")[2]
        limiter = gate.limiter
        if limiter is None or not (cutoff := limiter.violation(speaker)):
            return
        log.warning("agent.cut_off", extra={"agent_id": speaker, "seconds": cutoff})
        if on_cutoff is not None:
            # in the background: kicking waits for every NATS server's answer (a quarter
            # second on a cluster), which the reports of other agents must not wait for
            kicking = asyncio.ensure_future(on_cutoff(speaker))
            _cutoffs.add(kicking)
            kicking.add_done_callback(_cutoffs.discard)

    return count
