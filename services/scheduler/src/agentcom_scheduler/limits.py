"""Rate limits per agent and tier, and the back-off for agents that keep sending garbage.

Token buckets: each agent has one per tier (`light`, `normal`, `heavy`), holding a minute's
worth of tokens and refilled continuously; an admin can override an agent's rates. Reports over
NATS and an agent's HTTP calls both draw from them:

| tier | reports | HTTP (agent token) |
|---|---|---|
| light | heartbeat | GET |
| normal | progress, tool_call, recovering, restarting | anything else |
| heavy | hello | - |

Task outcomes (accepted, rejected, completed, partial_pass, failed) are never limited: there is
one per assignment and dropping one would lose work. A report over its budget is dropped (and
counted); an HTTP call gets 429 with `retry_after` (seconds) and `Retry-After`.

Malformed reports from one agent are counted in a sliding window; at the limit the agent is cut
off: its NATS logins are refused, its open connections closed and its reports dropped for 30 s,
then 60 s, then 300 s for each later cut-off (phase 12).

Buckets, overrides and cut-offs are rows in Postgres (`store_limits`), judged by Postgres's
clock: every scheduler replica draws from the same bucket, so the limit is the limit whatever
the replica count, and a restart forgives nothing (the buckets are an unlogged table: only a
crash of Postgres itself refills them, which forgives at most a minute's budget). The report
consumer's gate for a whole batch of reports is one statement (`admit`): the cut-offs of the
batch's agents and the takes of their heartbeats together; any other limited report takes its
token in the transaction that applies it (`take_in`).
"""

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agentcom_common.errors import TooManyRequestsError
from agentcom_scheduler import store_limits

RateClass = Literal["light", "normal", "heavy"]
"""Which of an agent's rate budgets a request or report draws on (not a model `Tier`)."""
RATE_CLASSES: tuple[RateClass, ...] = ("light", "normal", "heavy")

REPORT_CLASS: dict[str, RateClass | None] = {
    "heartbeat": "light",
    "progress": "normal",
    "tool_call": "normal",
    "recovering": "normal",
    "restarting": "normal",
    "hello": "heavy",
}
"""The rate class of each report kind; outcomes are absent (never limited)."""
DEFAULT_RATES: dict[RateClass, int] = {"light": 120, "normal": 60, "heavy": 10}


class RateLimitedError(TooManyRequestsError):
    default_code = "rate_limited"


@dataclass(slots=True)
class Rates:
    """An agent's per-minute rates by tier and whether an admin set any of them."""

    light: int
    normal: int
    heavy: int
    overridden: bool


@dataclass(frozen=True, slots=True)
class Admission:
    """A batch's gate: the agents cut off (seconds left) and the tokens each take got."""

    cut_off: dict[str, float]
    got: dict[tuple[str, RateClass], int]


@dataclass(slots=True)
class Limiter:
    """The settings of the limits; the state is in Postgres, reached through `engine`."""

    rates: dict[RateClass, int]
    window: timedelta = timedelta(minutes=1)
    violation_limit: int = 10
    cooldowns: Sequence[timedelta] = (
        timedelta(seconds=30),
        timedelta(seconds=60),
        timedelta(seconds=300),
    )
    dropped: dict[str, int] = field(default_factory=dict[str, int])
    """Takes refused by this process, by tier (a per-replica count, as metrics are)."""

    async def admit(
        self,
        engine: AsyncEngine,
        speakers: Collection[str],
        wanted: dict[tuple[str, RateClass], int],
    ) -> Admission:
        """In one statement: which of `speakers` are cut off (seconds left), and
        `wanted[(agent, tier)]` tokens taken (how many each got). The shortfall of an agent
        cut off is not counted as dropped: its reports are refused for the cut-off."""
        if not speakers and not wanted:
            return Admission({}, {})
        async with engine.connect() as conn:
            # one statement: no BEGIN and COMMIT round trips around it
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            cut, rows = await store_limits.admit(
                conn, sorted(set(speakers)), _plain_keys(wanted), _plain(self.rates)
            )
        got: dict[tuple[str, RateClass], int] = dict.fromkeys(wanted, 0)
        for row in rows:
            got[(row.agent_id, row.tier)] = int(row.granted)
        for key, n in wanted.items():
            if key[0] not in cut and (short := n - got[key]) > 0:
                self.dropped[key[1]] = self.dropped.get(key[1], 0) + short
        return Admission(cut, got)

    async def take(self, engine: AsyncEngine, agent_id: str, tier: RateClass) -> float:
        """Take one token: 0 when allowed, else seconds until one is there."""
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            return await self.take_in(conn, agent_id, tier)

    async def take_in(self, conn: AsyncConnection, agent_id: str, tier: RateClass) -> float:
        """`take` in the caller's transaction (a report's, which then applies it: no pool
        checkout and commit of its own). The take holds only if that transaction commits."""
        _, rows = await store_limits.admit(conn, [], {(agent_id, tier): 1}, _plain(self.rates))
        row = rows[0]
        if row.granted:
            return 0.0
        self.dropped[tier] = self.dropped.get(tier, 0) + 1
        return max(1e-3, (1 - float(row.tokens)) / (float(row.per_minute) / 60.0))

    async def check(self, engine: AsyncEngine, agent_id: str, tier: RateClass) -> None:
        """Raise 429 when the agent's bucket for `tier` is empty."""
        wait = await self.take(engine, agent_id, tier)
        if wait:
            rate = getattr(await self.rates_of(engine, agent_id), tier)
            raise RateLimitedError(
                f"agent {agent_id} is over its {tier} rate "
                f"({rate}/min); retry_after_ms={int(wait * 1000) + 1}",
                retry_after=wait,
            )

    async def rates_of(self, engine: AsyncEngine, agent_id: str) -> Rates:
        async with engine.connect() as conn:
            row = await store_limits.fetch_override(conn, agent_id)

        def rate(tier: RateClass) -> int:
            value = None if row is None else getattr(row, tier)
            return self.rates[tier] if value is None else int(value)

        return Rates(rate("light"), rate("normal"), rate("heavy"), row is not None)

    async def set_override(
        self, engine: AsyncEngine, agent_id: str, rates: dict[RateClass, int]
    ) -> None:
        """Admin override of an agent's per-minute rates (an empty dict clears it); the new
        rate applies from a full bucket."""
        async with engine.begin() as conn:
            await store_limits.set_override(conn, agent_id, _plain(rates))

    async def violation(self, engine: AsyncEngine, agent_id: str) -> float:
        """Count a malformed report; returns the cut-off in seconds when this one crosses the
        limit (the counter starts again), else 0."""
        async with engine.begin() as conn:
            return await store_limits.violation(
                conn, agent_id, self.window, self.violation_limit, list(self.cooldowns)
            )

    async def blocked(self, engine: AsyncEngine, agents: list[str]) -> dict[str, float]:
        """Seconds left of each agent's cut-off under way (absent: it may talk)."""
        return (await self.admit(engine, agents, {})).cut_off


def _plain(rates: dict[RateClass, int]) -> dict[str, int]:
    return {str(tier): n for tier, n in rates.items()}


def _plain_keys(wanted: dict[tuple[str, RateClass], int]) -> dict[tuple[str, str], int]:
    return {(agent, str(tier)): n for (agent, tier), n in wanted.items()}
