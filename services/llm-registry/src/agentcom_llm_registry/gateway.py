"""The gateway: route a chat call, try candidates in order, account for it.

Routing reads the in-memory registry, the upstream call goes through one pooled aiohttp
session, and the ledger row is journaled and buffered (see `ledger.py`). The one database work
on the request path is the budget's: a reservation before the call and its settlement after
(`budgets.py`), one statement each, skipped when no budget applies. Fallback moves to the next candidate on a connection error, timeout,
5xx/429/401/403/404 or a malformed reply; a 400/422 is the caller's request and is returned
as is. A stream falls back only until its first piece went to the client.
"""

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import aiohttp

from agentcom_common import prices
from agentcom_common.contracts.llm import RouteStep, Routing
from agentcom_common.errors import AgentcomError, InvalidError
from agentcom_llm_registry import meters, upstream
from agentcom_llm_registry.budgets import Budgets, Hold, Who, prompt_tokens
from agentcom_llm_registry.ledger import Entry, Ledger
from agentcom_llm_registry.providers import Delta, Reply, UpstreamError, UpstreamRefusedError
from agentcom_llm_registry.registry import TIERS, Candidate, Endpoint, Registry
from agentcom_llm_registry.upstream import Call

log = logging.getLogger(__name__)
T = TypeVar("T")
AUTO_MODELS = frozenset({"auto", "", *TIERS})


class UpstreamFailedError(AgentcomError):
    status = 502
    default_code = "upstream_failed"

    def __init__(self, detail: str, routing: Routing) -> None:
        super().__init__(detail)
        self.routing = routing


class UpstreamBadRequestError(AgentcomError):
    status = 400
    default_code = "upstream_bad_request"


@dataclass(slots=True)
class _Flow:
    """One stream's progress, for whichever of the relay and `finish` ends it."""

    last: Delta
    accounted: bool = False


@dataclass(slots=True)
class _Use:
    """What one upstream call came to, for the endpoint's health and token counts."""

    ok: bool = False
    tokens_in: int = 0
    tokens_out: int = 0


def resolve(model: str | None, tier: str | None) -> tuple[str, str | None]:
    """(tier, explicit model): `auto` or a tier name as the model means "route by tier"."""
    if tier is not None and tier not in TIERS:
        raise InvalidError(f"tier: must be one of {', '.join(TIERS)}", field="tier")
    if model is None or model in AUTO_MODELS:
        return tier or (model if model in TIERS else "standard"), None
    return tier or "", model


class Gateway:
    def __init__(
        self,
        registry: Registry,
        ledger: Ledger,
        budgets: Budgets,
        *,
        request_timeout: float,
        connect_timeout: float,
        reserve_max_tokens: int,
    ) -> None:
        self.reserve_max_tokens = reserve_max_tokens
        self.registry = registry
        self.ledger = ledger
        self.budgets = budgets
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=60)
        self.session = aiohttp.ClientSession(
            connector=connector,
            json_serialize=json.dumps,
            timeout=aiohttp.ClientTimeout(
                total=None, connect=self.connect_timeout, sock_read=self.request_timeout
            ),
        )

    async def close(self) -> None:
        await self.budgets.drain()
        if self.session is not None:
            await self.session.close()

    def _session(self) -> aiohttp.ClientSession:
        assert self.session is not None, "Gateway.open() runs in the lifespan"
        return self.session

    async def chat(
        self, call: Call, model: str | None, tier: str | None, who: Who
    ) -> tuple[Reply, Routing]:
        started = time.perf_counter()
        reply, routing, hold = await self._route(
            call, model, tier, who, started, lambda c: self._attempt(c, call)
        )
        entry = self._account(who, routing, reply.tokens_in, reply.tokens_out, started, ok=True)
        reply.cost_usd = entry.cost_usd
        self.budgets.settle_later(hold, reply.tokens_in + reply.tokens_out, entry.cost_usd)
        return reply, routing

    async def _route(
        self,
        call: Call,
        model: str | None,
        tier: str | None,
        who: Who,
        started: float,
        attempt: Callable[[Candidate], Awaitable[T]],
    ) -> tuple[T, Routing, Hold]:
        """Reserve the call's budget, then try the candidates in order until one attempt
        succeeds; (its result, routing, the reservation to settle).

        A refusal (400/422) ends the search. A refused call, or one no candidate answered, is
        accounted and its reservation released here; a success is the caller's to account."""
        tier_name, explicit = resolve(model, tier)
        priced, _ = self.registry.candidates(tier_name, explicit, who.agent_id)
        hold = await self.budgets.reserve(who, *self._estimate(call, priced))
        try:
            # ordered again after the reservation's await: calls routed meanwhile are in flight
            # now, and the order must count them (load spreading)
            found, skipped = self.registry.candidates(tier_name, explicit, who.agent_id)
            result, routing = await self._try(
                who, started, attempt, tier_name, explicit, found, skipped
            )
        except BaseException:  # failed, refused or cancelled: the call used nothing budgeted
            await self.budgets.settle(hold, 0, 0.0)
            raise
        return result, routing, hold

    def _estimate(self, call: Call, found: list[Candidate]) -> tuple[int, float]:
        """(tokens, USD) the call may use: the prompt plus max_tokens (set here when the call
        names none, so the upstream cannot exceed it), at the dearest candidate's price."""
        limit = call.options.get("max_tokens")
        if limit is None:
            limit = call.options["max_tokens"] = self.reserve_max_tokens
        elif not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise InvalidError(
                "max_tokens: must be a whole number of at least 1 (Ollama: options.num_predict)",
                field="max_tokens",
            )
        tokens_in = prompt_tokens(call)
        usd = max(
            (prices.cost(c.model, tokens_in, limit, self.ledger.prices) for c in found),
            default=0.0,
        )
        return tokens_in + limit, usd

    async def _try(
        self,
        who: Who,
        started: float,
        attempt: Callable[[Candidate], Awaitable[T]],
        tier_name: str,
        explicit: str | None,
        found: list[Candidate],
        skipped: list[RouteStep],
    ) -> tuple[T, Routing]:
        tried: list[tuple[Candidate, str]] = []
        for index, cand in enumerate(found):
            try:
                result = await attempt(cand)
            except UpstreamRefusedError as exc:
                tried.append((cand, f"refused: {exc.status}"))
                routing = self.registry.explain(
                    tier_name, explicit, tried, found[index + 1 :], skipped
                )
                self._account(who, routing, 0, 0, started, ok=False)
                raise UpstreamBadRequestError(
                    f"{cand.endpoint.id} refused the request: {exc.detail}"
                ) from exc
            except UpstreamError as exc:
                tried.append((cand, f"failed: {exc}"))
                meters.failovers.add(
                    1, {"agentcom.llm.endpoint": cand.endpoint.id, "agentcom.llm.tier": tier_name}
                )
                continue
            tried.append((cand, "chosen"))
            return result, self.registry.explain(
                tier_name, explicit, tried, found[index + 1 :], skipped
            )
        routing = self.registry.explain(tier_name, explicit, tried, [], skipped)
        self._account(who, routing, 0, 0, started, ok=False)
        raise _all_failed(routing)

    def _account(
        self, who: Who, routing: Routing, tin: int, tout: int, started: float, *, ok: bool
    ) -> Entry:
        return self.ledger.record(
            caller=who.caller,
            caller_class=who.caller_class,
            routing=routing,
            tokens_in=tin,
            tokens_out=tout,
            seconds=time.perf_counter() - started,
            ok=ok,
            goal_id=who.goal_id,
        )

    @asynccontextmanager
    async def _upstream(
        self, cand: Candidate, call: Call, *, stream: bool
    ) -> AsyncGenerator[tuple[aiohttp.ClientResponse, _Use]]:
        """POST the call to one candidate with a 2xx answer; the endpoint's health and tokens
        are accounted when the block ends, from what it set on the `_Use`."""
        endpoint = cand.endpoint
        url, body, headers = upstream.build_request(
            endpoint.provider, endpoint.base_url, endpoint.api_key, cand.model, call, stream=stream
        )
        self.registry.started(endpoint)
        began = time.perf_counter()
        use = _Use()
        try:
            async with self._session().post(url, json=body, headers=headers) as resp:
                if resp.status >= 300:
                    _check_status(endpoint, resp.status, await resp.read())
                yield resp, use
        except UpstreamRefusedError:
            use.ok = True  # the endpoint works; the request was bad
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise UpstreamError(f"{type(exc).__name__} from {endpoint.id}") from exc
        finally:
            self.registry.finished(
                endpoint, use.ok, time.perf_counter() - began, use.tokens_in, use.tokens_out
            )

    async def _attempt(self, cand: Candidate, call: Call) -> Reply:
        async with self._upstream(cand, call, stream=False) as (resp, use):
            raw = await resp.read()
            try:
                parsed = json.loads(raw)
            except ValueError as exc:
                raise UpstreamError(f"{cand.endpoint.id} answered non-JSON") from exc
            reply = upstream.parse_reply(cand.endpoint.provider, parsed)
            use.ok, use.tokens_in, use.tokens_out = True, reply.tokens_in, reply.tokens_out
            return reply

    async def stream(
        self, call: Call, model: str | None, tier: str | None, who: Who
    ) -> tuple[Routing, AsyncIterator[Delta], Callable[[], Awaitable[None]]]:
        """Open a stream on the first candidate that yields a first piece; fall back before that.

        (routing, the pieces, `finish`): the caller runs `finish` once the response is over,
        whatever happened to it (Starlette's background task, which a client leaving does not
        cancel). It settles the budget; and when the pieces never ran their own cleanup (the
        client left before the first one, or the cleanup was cancelled with the response) it
        closes the upstream and accounts the call as failed."""
        started = time.perf_counter()
        (_, first, pieces), routing, hold = await self._route(
            call, model, tier, who, started, lambda c: self._first_piece(c, call)
        )
        flow = _Flow(first)

        async def finish() -> None:
            last = flow.last
            if not flow.accounted:
                flow.accounted = True
                with contextlib.suppress(Exception):  # closing, or closed by a cancelled cleanup
                    await pieces.aclose()
                self._account(who, routing, last.tokens_in, last.tokens_out, started, ok=False)
            cost = self.ledger.price(routing.model, last.tokens_in, last.tokens_out)
            await self.budgets.settle(hold, last.tokens_in + last.tokens_out, cost)

        return routing, self._relay(pieces, routing, who, started, flow), finish

    async def _first_piece(
        self, cand: Candidate, call: Call
    ) -> tuple[Candidate, Delta, AsyncGenerator[Delta]]:
        pieces = self._upstream_stream(cand, call)
        try:
            return cand, await anext(pieces), pieces
        except StopAsyncIteration:
            await pieces.aclose()
            raise UpstreamError("empty stream") from None
        except UpstreamError:
            await pieces.aclose()
            raise

    async def _relay(
        self, rest: AsyncGenerator[Delta], routing: Routing, who: Who, started: float, flow: _Flow
    ) -> AsyncIterator[Delta]:
        ok = False
        try:
            yield flow.last
            if not flow.last.done:
                async for delta in rest:
                    flow.last = delta
                    yield delta
            ok = flow.last.done
        finally:
            await rest.aclose()  # a client that went away must not leave the upstream open
            last = flow.last
            self._account(who, routing, last.tokens_in, last.tokens_out, started, ok=ok)
            flow.accounted = True

    async def _upstream_stream(self, cand: Candidate, call: Call) -> AsyncGenerator[Delta]:
        async with self._upstream(cand, call, stream=True) as (resp, use):
            async for delta in upstream.parse_stream(cand.endpoint.provider, _lines(resp.content)):
                use.ok, use.tokens_in, use.tokens_out = (
                    delta.done,
                    delta.tokens_in,
                    delta.tokens_out,
                )
                yield delta

    async def probe(self, endpoint: Endpoint, timeout: float) -> tuple[list[str], list[str] | None]:
        """(models, warm models or None) from the endpoint; raises on any failure."""
        models_path, warm_path = upstream.discovery_paths(endpoint.provider)
        headers = upstream.discovery_headers(endpoint.provider, endpoint.api_key)
        base = endpoint.base_url.rstrip("/")
        async with asyncio.timeout(timeout):
            models = upstream.parse_models(
                endpoint.provider, await self._get_json(base + models_path, headers)
            )
            warm = None
            if warm_path is not None:
                warm = upstream.parse_models(
                    endpoint.provider, await self._get_json(base + warm_path, headers)
                )
        return models, warm

    async def _get_json(self, url: str, headers: dict[str, str]) -> dict[str, object]:
        async with self._session().get(url, headers=headers) as resp:
            if resp.status != 200:
                raise UpstreamError(f"HTTP {resp.status}")
            body = await resp.json(content_type=None)
        if not isinstance(body, dict):
            raise UpstreamError("not a JSON object")
        return body  # pyright: ignore[reportUnknownVariableType]


def _all_failed(routing: Routing) -> UpstreamFailedError:
    attempts = "; ".join(f"{s.endpoint_id}: {s.outcome}" for s in routing.candidates)
    return UpstreamFailedError(f"every candidate failed: {routing.reason}; {attempts}", routing)


def _check_status(endpoint: Endpoint, status: int, raw: bytes) -> None:
    if status < 300:
        return
    detail = raw[:300].decode(errors="replace")
    if status in (400, 422):
        raise UpstreamRefusedError(status, detail)
    raise UpstreamError(f"HTTP {status} from {endpoint.id}")


async def _lines(reader: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    async for line in reader:
        yield line
