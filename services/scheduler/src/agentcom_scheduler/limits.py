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
then 60 s, then 300 s for each later cut-off (phase 12). All state is per process, in memory:
a restart forgives.
"""

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import ClassVar, Literal

from agentcom_common.errors import TooManyRequestsError

Tier = Literal["light", "normal", "heavy"]
TIERS: tuple[Tier, ...] = ("light", "normal", "heavy")

REPORT_TIER: dict[str, Tier | None] = {
    "heartbeat": "light",
    "progress": "normal",
    "tool_call": "normal",
    "recovering": "normal",
    "restarting": "normal",
    "hello": "heavy",
}
"""Tier of each report kind; outcomes are absent (never limited)."""
DEFAULT_RATES: dict[Tier, int] = {"light": 120, "normal": 60, "heavy": 10}


class RateLimitedError(TooManyRequestsError):
    default_code = "rate_limited"


@dataclass(slots=True)
class Bucket:
    per_minute: float
    tokens: float
    stamp: float

    def take(self, now: float) -> float:
        """Take a token: 0 if granted, else seconds until one is there."""
        rate = self.per_minute / 60.0
        self.tokens = min(self.per_minute, self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / rate


@dataclass(slots=True)
class Limiter:
    rates: dict[Tier, int]
    window: timedelta = timedelta(minutes=1)
    violation_limit: int = 10
    cooldowns: Sequence[timedelta] = (
        timedelta(seconds=30),
        timedelta(seconds=60),
        timedelta(seconds=300),
    )
    overrides: dict[str, dict[Tier, int]] = field(default_factory=dict[str, dict[Tier, int]])
    dropped: dict[str, int] = field(default_factory=dict[str, int])
    _buckets: dict[tuple[str, Tier], Bucket] = field(default_factory=dict[tuple[str, Tier], Bucket])
    _violations: dict[str, deque[float]] = field(default_factory=dict[str, deque[float]])
    _cutoffs: dict[str, int] = field(default_factory=dict[str, int])
    _blocked_until: dict[str, float] = field(default_factory=dict[str, float])

    clock: ClassVar = staticmethod(time.monotonic)

    def rate(self, agent_id: str, tier: Tier) -> int:
        return self.overrides.get(agent_id, {}).get(tier, self.rates[tier])

    def set_override(self, agent_id: str, rates: dict[Tier, int]) -> None:
        """Admin override of an agent's per-minute rates (an empty dict clears it)."""
        if rates:
            self.overrides[agent_id] = dict(rates)
        else:
            self.overrides.pop(agent_id, None)
        for tier in TIERS:  # the new rate applies from a full bucket
            self._buckets.pop((agent_id, tier), None)

    def take(self, agent_id: str, tier: Tier) -> float:
        """0 when allowed, else seconds to wait."""
        now = self.clock()
        key = (agent_id, tier)
        bucket = self._buckets.get(key)
        per_minute = float(self.rate(agent_id, tier))
        if bucket is None:
            bucket = self._buckets[key] = Bucket(per_minute, per_minute, now)
        wait = bucket.take(now)
        if wait:
            self.dropped[tier] = self.dropped.get(tier, 0) + 1
        return wait

    def check(self, agent_id: str, tier: Tier) -> None:
        """Raise 429 when the agent's bucket for `tier` is empty."""
        wait = self.take(agent_id, tier)
        if wait:
            raise RateLimitedError(
                f"agent {agent_id} is over its {tier} rate "
                f"({self.rate(agent_id, tier)}/min); retry_after_ms={int(wait * 1000) + 1}",
                retry_after=wait,
            )

    def violation(self, agent_id: str) -> float:
        """Count a malformed report; returns the cut-off in seconds when this one crosses the
        limit (the counter starts again), else 0."""
        now = self.clock()
        seen = self._violations.setdefault(agent_id, deque())
        seen.append(now)
        while seen and seen[0] < now - self.window.total_seconds():
            seen.popleft()
        if len(seen) < self.violation_limit:
            return 0.0
        seen.clear()
        count = self._cutoffs.get(agent_id, 0)
        self._cutoffs[agent_id] = count + 1
        seconds = self.cooldowns[min(count, len(self.cooldowns) - 1)].total_seconds()
        self._blocked_until[agent_id] = now + seconds
        return seconds

    def blocked(self, agent_id: str) -> float:
        """Seconds left of the agent's cut-off, 0 when it may talk."""
        left = self._blocked_until.get(agent_id, 0.0) - self.clock()
        if left <= 0:
            self._blocked_until.pop(agent_id, None)
            return 0.0
        return left
