"""Tier fallbacks: route a tier from the next tier's classes for a while, set or ended by the
hub's healing (`agentcom.rpc.llm.fallback`), held in Postgres and followed by every replica.

Each write and re-read counts against the owner's change counter (`Llm.changed`), so a re-read
that raced a local set or end is read again instead of undoing it.
"""

import logging
from datetime import timedelta

from nats.aio.client import Client
from nats.aio.msg import Msg

from agentcom_common import outbox, subjects
from agentcom_common.contracts.llm import TierFallback
from agentcom_llm_registry import store
from agentcom_llm_registry.ops import Llm

log = logging.getLogger(__name__)


async def fall_back(s: Llm, tier: str, seconds: float, reason: str) -> TierFallback:
    """Route `tier` from the next tier's classes for `seconds` (0 ends it). Postgres holds
    it, so every replica routes alike and a restart keeps it, and its end is the
    database's clock; `agentcom.evt.llm.tier_fallback` makes the other replicas re-read
    at once (their health pass would, within `llm_health_interval`)."""
    s.registry.may_fall_back(tier, seconds)
    s.changed()  # a reload reading before this commit must not undo it here
    async with s.engine.begin() as conn:
        if seconds > 0:
            until = await store.set_fallback(conn, tier, timedelta(seconds=seconds), reason)
        else:
            until = None
            await store.end_fallback(conn, tier)
        classes = s.registry.fall_back(tier, until, seconds)
        event = TierFallback(tier=tier, until=until, classes=classes)
        await outbox.add(conn, s.outbox, subjects.LLM_TIER_FALLBACK, event)
    # once more after the commit: a re-read that began before it (an event's, a health
    # pass's) sees the count move and reads again; one that ended before it is undone here
    s.changed()
    s.registry.fall_back(tier, until, seconds)
    return event


async def reload(s: Llm) -> None:
    """Re-read the fallbacks; a read a change of this replica raced is read again (CI saw
    a re-read from before an end applied after it, routing the ended fallback on)."""
    while True:
        changes = s.changes
        async with s.engine.connect() as conn:
            fallbacks = await store.active_fallbacks(conn)
        if changes == s.changes:
            s.registry.follow_fallbacks(fallbacks)
            return


async def follow(s: Llm, nc: Client) -> None:
    """Re-read the fallbacks whenever any replica sets or ends one."""

    async def on_fallback(_msg: Msg) -> None:
        try:
            await reload(s)
        except Exception:  # Postgres away: the health pass reads them again
            log.exception("fallbacks.reload_failed")

    await nc.subscribe(subjects.LLM_TIER_FALLBACK, cb=on_fallback)  # pyright: ignore[reportUnknownMemberType]  # nats-py: untyped Future parameter
