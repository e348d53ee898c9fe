"""A contemplation cycle: the entry work of `contemplating`, started by the brain once per stay.

It picks the repo least recently contemplated (`hub_contemplation_repos`, or the repos of the
hub's goals), gathers the context (`context`), asks a model through the gateway for at most
`hub_contemplation_max_proposals` proposals (charged to the `contemplating` budget: the hub
announced the state before the brain started this), keeps those `reply.keep` allows, and
stores them as `pending` with the cycle's end, moving the hub to resting in the same
transaction. Nothing is accepted here: a proposal waits for a person (`ops`).

A model or gateway error, or a reply with no proposals document, ends the cycle `failed` with
the reason in its report (the hub still goes resting; the next cycle waits the interval). A
cycle cancelled by a `stop` is `interrupted`; one resumed after a restart finds its row by the
stay, and a cycle that already ended only moves the hub on.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from nats.aio.client import Client
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common.contracts.hub import HubState
from agentcom_common.contracts.llm import ChatReply, ChatRequest
from agentcom_common.contracts.task import Tier
from agentcom_common.errors import AgentcomError
from agentcom_hubfsm.brain import store as brain_store
from agentcom_hubfsm.contemplation import context, prompt, reply, store
from agentcom_hubfsm.repocache import RepoCache
from agentcom_hubfsm.settings import HubSettings
from agentcom_hubfsm.tables import goals

log = logging.getLogger(__name__)
Chat = Callable[[ChatRequest], Awaitable[ChatReply]]
CALLER: Final = "hubfsm.contemplation"


@dataclass(frozen=True, slots=True)
class Contemplator:
    engine: AsyncEngine
    nc: Client
    settings: HubSettings
    cache: RepoCache
    chat: Chat
    wake: asyncio.Event  # the brain's: the move to resting lets its rules run again
    actor: str = "contemplation"

    async def run(self) -> None:
        async with self.engine.connect() as conn:
            row = await brain_store.load(conn)
        if row.state != HubState.CONTEMPLATING:
            return
        entered = row.entered_at
        repo = await self._repo()
        async with self.engine.begin() as conn:
            cycle = await store.start_cycle(conn, entered, repo)
        if cycle.ended_at is not None:  # resumed after it ended: only the move is left
            await self._end(entered, cycle.id, [], "", "", {}, repo)
            return
        if repo is None:
            why = "no repo to contemplate: set hub_contemplation_repos or give the hub a goal"
            await self._end(entered, cycle.id, [], "nothing", why, {}, repo)
            return
        try:
            outcome, report, kept, analysed = await self._think(repo)
        except asyncio.CancelledError:
            # shield: the cancel that stops the cycle would otherwise abort the record of it
            await asyncio.shield(self._interrupted(entered, cycle.id))
            raise
        await self._end(entered, cycle.id, kept, outcome, report, analysed, repo)

    async def _think(self, repo: str) -> tuple[str, str, list[Any], dict[str, Any]]:
        s = self.settings
        limit = s.hub_contemplation_max_proposals
        try:
            ctx = await context.gather(self.engine, self.nc, self.cache, s, repo)
        except AgentcomError as exc:  # the repo could not be fetched: nothing to think about
            return "failed", f"{exc.code}: {exc.detail}", [], {}
        analysed = ctx.scalability.as_json()
        try:
            answer = await self.chat(
                ChatRequest(
                    messages=prompt.messages(ctx, limit),
                    tier=Tier.STANDARD,
                    caller=CALLER,
                    options={"max_tokens": 4096, "temperature": 0.4},
                )
            )
            drafts, bad = reply.read(answer.content)
        except AgentcomError as exc:
            return "failed", f"the model could not be asked: {exc.code}: {exc.detail}", [], analysed
        except reply.UnreadableReplyError as exc:
            return "failed", f"the reply held no proposals: {exc}", [], analysed
        kept, dropped = reply.keep(
            drafts,
            out_of_scope=ctx.out_of_scope,
            pending=[p.title for p in ctx.pending],
            limit=limit,
        )
        report = f"{len(kept)} proposed" + "".join(f"; dropped {d}" for d in [*bad, *dropped])
        return ("proposed" if kept else "nothing"), report, kept, analysed

    async def _repo(self) -> str | None:
        """The candidate contemplated longest ago (never first), in the settings' order or,
        without them, the goals' (most recent first)."""
        async with self.engine.connect() as conn:
            candidates = list(self.settings.hub_contemplation_repos)
            if not candidates:
                rows = await conn.execute(
                    select(goals.c.repo)
                    .group_by(goals.c.repo)
                    .order_by(func.max(goals.c.created_at).desc())
                    .limit(50)
                )
                candidates = [str(r) for (r,) in rows]
            last = await store.last_contemplated(conn)
        if not candidates:
            return None
        never = [c for c in candidates if c not in last]
        return never[0] if never else min(candidates, key=lambda c: last[c])

    async def _interrupted(self, entered: datetime, cycle: int) -> None:
        """Cancelled by a `stop` (the stay is over: `interrupted`), or because this replica no
        longer leads (the stay goes on: the next brain resumes the cycle)."""
        async with self.engine.begin() as conn:
            row = await brain_store.load(conn, lock=True)
            if row.state == HubState.CONTEMPLATING and row.entered_at == entered:
                return
            await store.end_cycle(conn, cycle, "interrupted", "stopped before it finished", {})

    async def _end(
        self,
        entered: datetime,
        cycle: int,
        kept: list[Any],
        outcome: str,
        report: str,
        analysed: dict[str, Any],
        repo: str | None,
    ) -> None:
        """Store the proposals and end the cycle and, while the hub is still in this stay,
        move it to resting: one transaction."""
        async with self.engine.begin() as conn:
            row = await brain_store.load(conn, lock=True)
            if outcome:
                if kept and repo is not None:
                    await store.add(conn, cycle, repo, kept)
                await store.end_cycle(conn, cycle, outcome, report, analysed)
            if row.state == HubState.CONTEMPLATING and row.entered_at == entered:
                await brain_store.move(
                    conn,
                    row,
                    HubState.RESTING,
                    reason=f"contemplation {outcome or 'done'}: {report}"[:500],
                    actor=self.actor,
                    watchdog=self.settings.hub_global_watchdog,
                )
        log.info("contemplation.ended", extra={"outcome": outcome, "proposals": len(kept)})
        self.wake.set()
