"""The in-memory registry: endpoints with their live signals, scoring, routing and breakers.

Postgres holds the endpoint list (reloaded every health pass, so replicas converge); everything
that changes per call (in-flight count, latencies, errors, breaker) lives here, in one process,
and is never written on the request path.

Size: one job, the call path's live state; scoring, candidates, breakers and the routing
explanation read the same per-endpoint signals and would only pass them around if split.
"""

import itertools
import statistics
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from agentcom_common.contracts.llm import RouteStep, Routing
from agentcom_common.errors import ConflictError, InvalidError, UnavailableError
from agentcom_llm_registry.breaker import Circuit, move
from agentcom_llm_registry.providers import Provider

Health = Literal["unknown", "healthy", "unhealthy"]
TIERS: tuple[str, ...] = ("trivial", "standard", "complex")


@dataclass(slots=True)
class HostResources:
    host: str
    agent_id: str
    cpu_percent: float | None
    ram_percent: float | None
    vram_percent: float | None
    load: float | None
    gpus: list[dict[str, Any]]
    at: float  # monotonic


@dataclass(slots=True, eq=False)
class Endpoint:
    id: str
    provider: Provider
    base_url: str
    api_key: str | None = field(repr=False)
    classes: list[str]
    models: list[str]
    host: str | None
    source: str
    # an endpoint learnt from an agent's heartbeat serves that agent alone until an admin
    # shares it; unshared it is never probed (an agent must not make us call any URL it names)
    owner: str | None = None
    shared: bool = True
    # health and discovery
    health: Health = "unknown"
    failures: int = 0  # consecutive failed health checks
    next_check: float = 0.0
    last_error: str | None = None
    checked_at: float | None = None
    discovered: list[str] = field(default_factory=list[str])
    warm: list[str] = field(default_factory=list[str])
    # live call signals
    in_flight: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque[float](maxlen=50))
    outcomes: deque[bool] = field(default_factory=lambda: deque[bool](maxlen=50))
    last_picked: int = 0  # the registry's pick number, not a time: see Registry.started
    # circuit breaker
    circuit: Circuit = "closed"
    call_failures: int = 0  # consecutive failed calls
    opened_at: float = 0.0
    trial_running: bool = False
    # metrics since start
    calls: int = 0
    errors: int = 0
    tokens_in: int = 0
    tokens_out: int = 0

    def all_models(self) -> list[str]:
        if self.owner is not None and self.shared:
            # shared with everyone: only what it answers for itself, never what its agent said
            return list(self.discovered)
        seen = dict.fromkeys(self.models)
        seen.update(dict.fromkeys(self.discovered))
        return list(seen)

    def serves(self, model: str) -> bool:
        return model in self.all_models()

    def probed(self) -> bool:
        """Whether health checks call it: not while it is an agent's own, unshared."""
        return self.owner is None or self.shared

    def usable_by(self, agent_id: str | None) -> bool:
        """Whether a call of `agent_id` (None: a person or a service) may be routed here."""
        return self.owner is None or self.shared or self.owner == agent_id

    def latency_p50(self) -> float | None:
        return statistics.median(self.latencies) if self.latencies else None

    def error_rate(self) -> float:
        return (self.outcomes.count(False) / len(self.outcomes)) if self.outcomes else 0.0


@dataclass(frozen=True, slots=True)
class Fallback:
    until: datetime  # when it ends, by the database's clock (what is shown)
    deadline: float  # the same moment on this process's monotonic clock (what routes)


@dataclass(slots=True)
class Candidate:
    endpoint: Endpoint
    model: str
    model_class: str
    score: float


class Registry:
    def __init__(
        self,
        tiers: dict[str, list[str]],
        *,
        circuit_failures: int,
        circuit_open: float,
        resource_stale: float,
        latency_window: int = 50,
    ) -> None:
        self.endpoints: dict[str, Endpoint] = {}
        self.hosts: dict[str, HostResources] = {}
        self.tiers = tiers
        self.circuit_failures = circuit_failures
        self.circuit_open = circuit_open
        self.resource_stale = resource_stale
        self.latency_window = latency_window
        self._picks = itertools.count(1)
        # tier -> its fallback: its calls start at the next tier's classes until then (the
        # hub's healing, when every endpoint of the tier stayed dead); Postgres holds them for
        # every replica (`fallbacks.fall_back`, `Llm.reload`), this is the call path's copy
        self.fallbacks: dict[str, Fallback] = {}

    def put(self, endpoint: Endpoint) -> Endpoint:
        """Add, or refresh the configuration of an endpoint we already track (keeps signals)."""
        known = self.endpoints.get(endpoint.id)
        if known is None:
            endpoint.latencies = deque(maxlen=self.latency_window)
            endpoint.outcomes = deque(maxlen=self.latency_window)
            self.endpoints[endpoint.id] = endpoint
            return endpoint
        known.provider, known.base_url, known.api_key = (
            endpoint.provider,
            endpoint.base_url,
            endpoint.api_key,
        )
        known.classes, known.models = endpoint.classes, endpoint.models
        known.host, known.source = endpoint.host, endpoint.source
        if (known.owner, known.shared) != (endpoint.owner, endpoint.shared):
            known.discovered, known.warm = [], []  # found under other terms: probed anew
            known.health, known.next_check = "unknown", 0.0
        known.owner, known.shared = endpoint.owner, endpoint.shared
        return known

    def get(self, endpoint_id: str) -> Endpoint | None:
        return self.endpoints.get(endpoint_id)

    def host_of(self, endpoint: Endpoint) -> HostResources | None:
        if endpoint.host is None:
            return None
        found = self.hosts.get(endpoint.host)
        if found is None or time.monotonic() - found.at > self.resource_stale:
            return None
        return found

    def score(self, endpoint: Endpoint, model: str) -> tuple[float, list[str]]:
        """Higher is better; every factor comes from a signal we actually measure.

        in-flight calls divide the score (two equal endpoints take turns under load), recent
        median latency and error rate lower it, a model already loaded (`/api/ps`) raises
        it, and a busy host (CPU, VRAM from the sidecar heartbeat) lowers it.
        """
        why: list[str] = []
        score = 1.0 / (1 + endpoint.in_flight)
        if endpoint.in_flight:
            why.append(f"in_flight={endpoint.in_flight}")
        if (p50 := endpoint.latency_p50()) is not None:
            score /= 1 + p50  # seconds: a 1 s median halves the score
            why.append(f"p50={p50 * 1000:.0f}ms")
        if rate := endpoint.error_rate():
            score *= max(0.05, 1 - rate)
            why.append(f"errors={rate:.0%}")
        if model in endpoint.warm:
            score *= 1.5
            why.append("warm")
        elif endpoint.provider == "ollama" and endpoint.warm:
            score *= 0.9
            why.append("cold")
        if (host := self.host_of(endpoint)) is not None:
            if host.cpu_percent is not None:
                score *= 1 - 0.5 * host.cpu_percent / 100
                why.append(f"cpu={host.cpu_percent:.0f}%")
            if host.vram_percent is not None:
                score *= 1 - 0.3 * host.vram_percent / 100
                why.append(f"vram={host.vram_percent:.0f}%")
        return score, why

    def admits(self, endpoint: Endpoint, now: float) -> tuple[bool, str]:
        """Whether a call may go to `endpoint` now, and why not."""
        if endpoint.health == "unhealthy":
            return False, f"unhealthy ({endpoint.last_error or 'failed checks'})"
        if endpoint.circuit == "open":
            if now - endpoint.opened_at < self.circuit_open:
                return False, "circuit open"
            endpoint.circuit = move(endpoint.circuit, "cooled")
        if endpoint.circuit == "half_open" and endpoint.trial_running:
            return False, "circuit half-open, trial call running"
        return True, ""

    def started(self, endpoint: Endpoint) -> None:
        endpoint.in_flight += 1
        # a counter, not time.monotonic(): two picks in one clock tick (coarse clocks) tied and
        # the stable sort then kept choosing the same endpoint; recency needs only the order
        endpoint.last_picked = next(self._picks)
        if endpoint.circuit == "half_open":
            endpoint.trial_running = True

    def finished(self, endpoint: Endpoint, ok: bool, seconds: float, tin: int, tout: int) -> None:
        endpoint.in_flight -= 1
        endpoint.calls += 1
        endpoint.outcomes.append(ok)
        endpoint.trial_running = False
        if ok:
            endpoint.latencies.append(seconds)
            endpoint.tokens_in += tin
            endpoint.tokens_out += tout
            endpoint.call_failures = 0
            endpoint.circuit = move(endpoint.circuit, "succeeded")
            return
        endpoint.errors += 1
        endpoint.call_failures += 1
        limit = endpoint.call_failures >= self.circuit_failures
        endpoint.circuit = move(endpoint.circuit, "failure_limit" if limit else "failed")
        if endpoint.circuit == "open":  # opened now, or again: its cool-down starts over
            endpoint.opened_at = time.monotonic()

    def chain(self, tier: str) -> list[str]:
        """Model classes for `tier`, then those of each higher tier: the escalation order."""
        if tier not in self.tiers:
            raise InvalidError(f"tier: must be one of {', '.join(self.tiers)}", field="tier")
        order = list(self.tiers)
        start = order.index(tier)
        if self.falls_back(tier):
            start += 1  # its own classes are skipped while the fallback lasts
        classes: list[str] = []
        for name in order[start:]:
            classes.extend(c for c in self.tiers[name] if c not in classes)
        return classes

    def falls_back(self, tier: str) -> bool:
        found = self.fallbacks.get(tier)
        if found is not None and found.deadline <= time.monotonic():
            del self.fallbacks[tier]
            return False
        return found is not None

    def may_fall_back(self, tier: str, seconds: float) -> None:
        """Refuse an unknown tier, and a fallback of the top tier (nothing is above it:
        `no_fallback`); ending one (`seconds` 0) is always allowed."""
        self.chain(tier)  # refuses an unknown tier
        names = list(self.tiers)
        if seconds > 0 and names.index(tier) == len(names) - 1:
            raise ConflictError(
                f"tier {tier} is the highest; there is no tier to fall back to",
                code="no_fallback",
            )

    def fall_back(self, tier: str, until: datetime | None, seconds: float) -> list[str]:
        """Route `tier` from the next tier's classes until `until` (the database's clock),
        `seconds` from now; None ends it. The classes its calls go to meanwhile."""
        if until is None:
            self.fallbacks.pop(tier, None)
        else:
            self.fallbacks[tier] = Fallback(until, time.monotonic() + seconds)
        return self.chain(tier)

    def follow_fallbacks(self, active: dict[str, tuple[datetime, float]]) -> None:
        """Take the fallbacks in force (tier -> until, seconds left), as Postgres has them."""
        now = time.monotonic()
        self.fallbacks = {
            tier: Fallback(until, now + left) for tier, (until, left) in active.items()
        }

    def tiers_of(self, endpoint: Endpoint) -> list[str]:
        """The tiers with a model class `endpoint` serves (by tag or by model name)."""
        return [
            tier
            for tier, classes in self.tiers.items()
            if any(c in endpoint.classes or endpoint.serves(c) for c in classes)
        ]

    def _pick_model(self, endpoint: Endpoint, model_class: str) -> str | None:
        if endpoint.serves(model_class):
            return model_class
        if model_class not in endpoint.classes:
            return None
        models = endpoint.all_models()
        for model in models:
            if model in endpoint.warm:
                return model
        return models[0] if models else None

    def plan(
        self, tier: str, model: str | None, agent_id: str | None = None
    ) -> tuple[list[Candidate], list[RouteStep]]:
        """Ordered candidates (best first within each class) and the ones left out, with why;
        `agent_id` is the calling agent (an agent's own endpoint is a candidate for it alone)."""
        now = time.monotonic()
        skipped: list[RouteStep] = []
        groups: list[tuple[str, list[Candidate]]] = []
        steps = ([model] if model else []) + (
            [] if model and tier == "" else self.chain(tier or "standard")
        )
        seen: set[tuple[str, str]] = set()
        for model_class in steps:
            group: list[Candidate] = []
            for endpoint in self.endpoints.values():
                if not endpoint.usable_by(agent_id):
                    continue
                chosen = self._pick_model(endpoint, model_class)
                if chosen is None or (endpoint.id, chosen) in seen:
                    continue
                seen.add((endpoint.id, chosen))
                ok, why = self.admits(endpoint, now)
                if not ok:
                    skipped.append(
                        RouteStep(
                            endpoint_id=endpoint.id,
                            model=chosen,
                            model_class=model_class,
                            score=0.0,
                            outcome=f"skipped: {why}",
                        )
                    )
                    continue
                score, _ = self.score(endpoint, chosen)
                group.append(Candidate(endpoint, chosen, model_class, score))
            groups.append((model_class, _order(group)))
        return [c for _, group in groups for c in group], skipped

    def candidates(
        self, tier: str, model: str | None, agent_id: str | None = None
    ) -> tuple[list[Candidate], list[RouteStep]]:
        found, skipped = self.plan(tier, model, agent_id)
        if not found:
            reasons = (
                "; ".join(f"{s.endpoint_id}: {s.outcome}" for s in skipped)
                or "no endpoint serves it"
            )
            raise UnavailableError(
                f"no LLM endpoint can take a {tier or 'standard'} call"
                + (f" for model {model}" if model else "")
                + f" ({reasons}); add one with POST /api/llm/endpoints or wait for recovery",
                code="no_endpoint_available",
            )
        return found, skipped

    def explain(
        self,
        tier: str,
        model: str | None,
        tried: list[tuple[Candidate, str]],
        rest: list[Candidate],
        skipped: list[RouteStep],
    ) -> Routing:
        steps = [
            RouteStep(
                endpoint_id=c.endpoint.id,
                model=c.model,
                model_class=c.model_class,
                score=round(c.score, 4),
                outcome=outcome,
            )
            for c, outcome in tried
        ]
        steps += [
            RouteStep(
                endpoint_id=c.endpoint.id,
                model=c.model,
                model_class=c.model_class,
                score=round(c.score, 4),
                outcome="not tried",
            )
            for c in rest
        ]
        chosen = next((c for c, outcome in tried if outcome == "chosen"), None)
        first_class = tried[0][0].model_class if tried else None
        fallback = len(tried) > 1
        if chosen is None:
            reason = f"all {len(tried)} tried candidates failed"
        else:
            _, factors = self.score(chosen.endpoint, chosen.model)
            reason = (
                f"{chosen.endpoint.id}/{chosen.model} for class {chosen.model_class}"
                + (f" after {len(tried) - 1} failed" if fallback else "")
                + (
                    f" (escalated from class {first_class})"
                    if first_class != chosen.model_class
                    else ""
                )
                + (f"; {', '.join(factors)}" if factors else "")
            )
        return Routing(
            tier=tier or "standard",
            requested_model=model,
            endpoint_id=chosen.endpoint.id if chosen else None,
            model=chosen.model if chosen else None,
            attempts=len(tried),
            fallback_used=fallback,
            reason=reason,
            candidates=steps + skipped,
        )

    def models(self, agent_id: str | None = None) -> Iterator[tuple[str, Endpoint]]:
        seen: set[str] = set()
        for endpoint in self.endpoints.values():
            if endpoint.health == "unhealthy" or not endpoint.usable_by(agent_id):
                continue
            for model in endpoint.all_models():
                if model not in seen:
                    seen.add(model)
                    yield model, endpoint


TIE = 0.9
"""Scores within 10 % of the best count as equal: noise in latency must not starve a peer."""


def _order(group: list[Candidate]) -> list[Candidate]:
    """Best first; among near-equal candidates the one picked longest ago goes first."""
    if not group:
        return group
    best = max(c.score for c in group)
    equal = sorted(
        (c for c in group if c.score >= best * TIE), key=lambda c: c.endpoint.last_picked
    )
    rest = sorted((c for c in group if c.score < best * TIE), key=lambda c: -c.score)
    return equal + rest
