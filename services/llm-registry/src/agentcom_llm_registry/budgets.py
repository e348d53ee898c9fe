"""Budgets in tokens and USD per agent, per goal and per hub state, held in Postgres.

Who pays comes from the credential, never from the request (`api.py`, `handlers.py`): a call
made with an agent's token pays into `agent:<id>`; one made with an admin token, or over NATS
(which only services can reach), is the hub's and pays into `hub:<state>`, the state the hub
last announced (`agentcom.evt.hub.state_changed`). A hub call about a goal (`X-Agentcom-Goal`,
`ChatRequest.goal_id`) pays into `goal:<id>` too.

Before the upstream call the gateway reserves an estimate, the prompt's size in tokens plus
`max_tokens`, priced at the dearest candidate's model, on every budget the call pays into, in
one statement (`store.reserve`: its row locks make concurrent calls take turns, so N calls at
once cannot all slip under a limit). After the reply the reservation is settled to what the
call used; a failed call releases it. Each budget has a fixed window (`llm_budget_window`),
opened by the first call after the last one closed; a refusal says when it closes. The rows
live in Postgres, so restarts and replicas share them.
"""

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, cast

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agentcom_common import clock, db
from agentcom_common.contracts.hub import HubState
from agentcom_common.errors import TooManyRequestsError
from agentcom_llm_registry import store
from agentcom_llm_registry.settings import Limit, LlmSettings
from agentcom_llm_registry.upstream import Call
from agentcom_llm_registry.views import BudgetView

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Who:
    """Who makes a call and who pays for it, from the credential."""

    caller: str  # a label in the ledger (the token's name)
    caller_class: str  # "agent", or "hub:<state>" for the hub's calls
    agent_id: str | None = None  # from an agent's token: its own endpoints are its candidates
    goal_id: str | None = None  # a hub call about this goal (the goal's budget pays too)


@dataclass(slots=True)
class Hold:
    """What one call reserved, and the window each budget reserved it in; settled once."""

    starts: dict[str, datetime]
    tokens: int
    usd: float
    settled: bool = False


class BudgetExhaustedError(TooManyRequestsError):
    """A budget the call pays into cannot take its estimate; `budget` names it with its limit
    and use. `retry_after` is the time until its window closes, or None when the call alone
    asks for more than the whole limit (waiting would not help; a smaller max_tokens may)."""

    default_code: ClassVar[str] = "budget_exhausted"

    def __init__(self, detail: str, *, budget: dict[str, Any], retry_after: float | None) -> None:
        super().__init__(detail, retry_after=retry_after or 0.0)
        self.budget = budget
        self.waits = retry_after is not None

    def as_body(self) -> dict[str, object]:
        body = super().as_body() | {"budget": self.budget}
        if not self.waits:
            del body["retry_after"]
        return body

    def headers(self) -> dict[str, str]:
        return super().headers() if self.waits else {}


class _ShortError(Exception):
    """A budget did not take the reservation: roll the statement's others back."""


def prompt_tokens(call: Call) -> int:
    """An estimate of the prompt's tokens from its JSON size (3 bytes a token: English runs
    about 4, so this errs high; the settlement charges the real count)."""
    size = len(json.dumps([call.messages, call.tools], ensure_ascii=False).encode())
    return math.ceil(size / 3)


class Budgets:
    def __init__(self, engine: AsyncEngine, settings: LlmSettings) -> None:
        self.engine = engine
        self.settings = settings
        self.window = settings.llm_budget_window
        self._settling: set[asyncio.Task[None]] = set()

    def settle_later(self, hold: Hold, tokens: int, usd: float) -> None:
        """`settle` after the reply has gone: the caller does not wait for a second
        transaction (only the reservation must come before the call). Killed before it runs,
        the reservation counts until its window closes, as when Postgres is away."""
        if hold.settled or not hold.starts:
            return
        task = asyncio.create_task(self.settle(hold, tokens, usd))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def drain(self) -> None:
        """Wait for the settlements still running (at shutdown)."""
        if self._settling:
            await asyncio.wait(set(self._settling), timeout=10)

    def limit(self, scope: str) -> Limit:
        kind, _, key = scope.partition(":")
        s = self.settings
        if kind == "agent":
            return s.llm_agent_budgets.get(key, s.llm_agent_budget)
        if kind == "goal":
            return s.llm_goal_budget
        return s.llm_hub_budgets[cast(HubState, key)]  # every state has one (settings)

    def scopes(self, who: Who) -> list[str]:
        """The budgets a call pays into, sorted (the order rows are locked in)."""
        if who.caller_class == "agent":
            found = [f"agent:{who.agent_id or who.caller}"]
        else:
            found = [who.caller_class]
        if who.goal_id is not None:
            found.append(f"goal:{who.goal_id}")
        return sorted(s for s in found if self.limit(s) != Limit())

    async def reserve(self, who: Who, tokens: int, usd: float) -> Hold:
        """Reserve `tokens` and `usd` on every budget of `who`, or raise `budget_exhausted`."""
        scopes = self.scopes(who)
        if not scopes:
            return Hold({}, tokens, usd)
        waited = False
        for _ in range(3):  # a refusal re-read as fitting: use was settled down meanwhile
            now = clock.now()
            rows = [self._row(scope, tokens, usd) for scope in scopes]
            try:
                async with self._unit(len(rows)) as conn:
                    starts = await store.reserve(conn, now, now - self.window, rows)
                    if len(starts) < len(rows):
                        raise _ShortError
                return Hold(starts, tokens, usd)
            except _ShortError:
                # a settlement this process has not written yet may free room (a caller's
                # previous call, settled after its reply went): wait for it, then re-read
                if self._settling and not waited:
                    waited = True
                    await asyncio.wait(set(self._settling), timeout=5)
                    continue
            except db.FAILURES as exc:
                raise db.unavailable(exc) or exc from None
            if (refusal := await self._refusal(scopes, tokens, usd)) is not None:
                raise refusal
        raise BudgetExhaustedError(
            f"budgets {', '.join(scopes)} are contended; retry", budget={}, retry_after=1.0
        )

    async def settle(self, hold: Hold, tokens: int, usd: float) -> None:
        """Move the reservation to what the call used (0, 0 for a failed call); once."""
        if hold.settled or not hold.starts:
            return
        hold.settled = True
        rows = [
            {"scope": s, "window_start": at, "tokens": tokens - hold.tokens, "usd": usd - hold.usd}
            for s, at in hold.starts.items()
        ]
        try:
            async with self._unit(len(rows)) as conn:
                await store.settle(conn, rows)
        except Exception:  # Postgres away: the reservation counts until its window closes
            log.exception("budget.settle_failed", extra={"scopes": list(hold.starts)})

    @contextlib.asynccontextmanager
    async def _unit(self, budgets: int) -> AsyncGenerator[AsyncConnection]:
        """Where a reservation or settlement runs: one budget (the usual call: an agent's, or
        the hub state's) is one statement, atomic by itself, so it runs without BEGIN and
        COMMIT round trips (every call of that budget takes its row's lock; holding it for
        three round trips capped the gateway at 350 calls/s at 10 at once, against 1,500
        without budgets); several must all take it or none, in one transaction."""
        if budgets > 1:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self.engine.connect() as conn:
            yield await conn.execution_options(isolation_level="AUTOCOMMIT")

    async def status(self) -> list[BudgetView]:
        async with self.engine.connect() as conn:
            rows = await store.fetch_budgets(conn)
        closed = clock.now() - self.window
        return [self._view(r, closed) for r in rows]

    def _row(self, scope: str, tokens: int, usd: float) -> dict[str, Any]:
        limit = self.limit(scope)
        return {
            "scope": scope,
            "tokens": tokens,
            "usd": usd,
            "max_tokens": limit.tokens,
            "max_usd": None if limit.usd is None else float(limit.usd),
        }

    def _view(self, row: Any, closed: datetime) -> BudgetView:
        limit = self.limit(row.scope)
        open_ = row.window_start > closed
        return BudgetView(
            scope=row.scope,
            window_start=row.window_start,
            resets_at=row.window_start + self.window,
            tokens=row.tokens if open_ else 0,
            usd=round(row.usd, 6) if open_ else 0.0,
            max_tokens=limit.tokens,
            max_usd=limit.usd,
        )

    async def _refusal(self, scopes: list[str], tokens: int, usd: float) -> Exception | None:
        """The refusal naming the first budget that cannot take the call, read afresh."""
        async with self.engine.connect() as conn:
            rows = {r.scope: r for r in await store.fetch_budgets(conn, scopes)}
        now = clock.now()
        for scope in scopes:
            limit = self.limit(scope)
            row = rows.get(scope)
            view = self._view(row, now - self.window) if row is not None else None
            used_t, used_usd = (view.tokens, view.usd) if view else (0, 0.0)
            if _fits(used_t, tokens, limit.tokens) and _fits(used_usd, usd, limit.usd):
                continue
            alone = not (_fits(0, tokens, limit.tokens) and _fits(0.0, usd, limit.usd))
            resets = view.resets_at if view and view.tokens + view.usd > 0 else None
            return _exhausted(scope, limit, (used_t, used_usd), (tokens, usd), alone, resets, now)
        return None


def _fits(used: float, more: float, limit: float | None) -> bool:
    return limit is None or used + more <= limit


def _exhausted(
    scope: str,
    limit: Limit,
    used: tuple[int, float],
    asked: tuple[int, float],
    alone: bool,
    resets: datetime | None,
    now: datetime,
) -> BudgetExhaustedError:
    def measure(u: float, lim: float | None, unit: str) -> str:
        return f"{unit} not limited" if lim is None else f"{u:g} of {lim:g} {unit}"

    detail = (
        f"budget {scope} has used {measure(used[0], limit.tokens, 'tokens')} and "
        f"{measure(round(used[1], 6), limit.usd, 'USD')} this window; this call may use up to "
        f"{asked[0]} tokens ({asked[1]:.6f} USD)"
    )
    wait = None
    if alone:
        detail += ", more than the whole budget: ask for a smaller max_tokens (num_predict)"
    elif resets is not None:
        wait = max(0.0, (resets - now).total_seconds())
        detail += f"; its window closes at {resets.isoformat(timespec='seconds')} (in {wait:.1f} s)"
    budget: dict[str, Any] = {
        "scope": scope,
        "limit": {"tokens": limit.tokens, "usd": limit.usd},
        "used": {"tokens": used[0], "usd": round(used[1], 6)},
        "requested": {"tokens": asked[0], "usd": round(asked[1], 6)},
        "resets_at": None if resets is None else resets.isoformat(),
    }
    return BudgetExhaustedError(detail, budget=budget, retry_after=wait)
