"""Planning a goal: ask a model through the gateway, read and check its plan, re-prompt once.

The model sees the repo as it is at HEAD (`repocache`), never the hub's own working dir. An
answer that is not a good plan is answered once with its exact errors; when the second is not
good either, the outcome is `PlanRefused` with that answer's errors, for the goal to fail with
them visible. A gateway or model error is not a plan error: `UnavailableError` (no gateway, no
endpoint, every endpoint failed, a timeout) and `TooManyRequestsError` (a budget spent)
propagate from `make_plan`, for the caller to retry later; nothing was decided about the plan.

The gateway charges the calls to the budget of the state the hub last announced: the goal
driver plans only once the hub has announced `executing` (`driver._hub_executing`).
"""

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from agentcom_common.contracts.llm import ChatReply, ChatRequest
from agentcom_common.contracts.plan import Plan
from agentcom_common.contracts.task import Tier
from agentcom_hubfsm.goals import plan as plans, planparse, planprompt
from agentcom_hubfsm.goals.planprompt import Format, GoalBrief
from agentcom_hubfsm.repocache import RepoCache, Snapshot

log = logging.getLogger(__name__)

Chat = Callable[[ChatRequest], Awaitable[ChatReply]]
"""One gateway call: `functools.partial(clients.chat, nc, timeout=...)`."""

ATTEMPTS: Final = 2  # the first answer and one re-prompt with its errors
CALLER: Final = "hubfsm.planner"  # the ledger's label; who pays is the hub state's budget


@dataclass(frozen=True, slots=True)
class Usage:
    """What the planning calls used, as the gateway's ledger counted it."""

    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0

    def add(self, reply: ChatReply) -> "Usage":
        return Usage(
            self.calls + 1,
            self.tokens_in + reply.tokens_in,
            self.tokens_out + reply.tokens_out,
            self.cost_usd + reply.cost_usd,
        )


@dataclass(frozen=True, slots=True)
class Planned:
    """A plan that passed every check, made from the repo at commit `head`."""

    plan: Plan
    head: str | None
    attempts: int
    usage: Usage


@dataclass(frozen=True, slots=True)
class PlanRefused:
    """No good plan after `attempts` answers; `errors` are the last answer's."""

    errors: tuple[str, ...]
    attempts: int
    usage: Usage


PlanOutcome = Planned | PlanRefused


def review(text: str, goal: GoalBrief, repo: Snapshot) -> tuple[Plan | None, list[str]]:
    """(the plan, every error) of one answer; no errors = a good plan."""
    try:
        found = planparse.parse(text)
    except planparse.UnreadablePlanError as exc:
        return None, exc.errors
    errors = plans.check(
        found, frozenset(repo.files), budget_tokens=goal.budget_tokens, budget_usd=goal.budget_usd
    )
    return found, errors


async def make_plan(
    chat: Chat,
    goal: GoalBrief,
    repo: Snapshot,
    *,
    tier: Tier = Tier.STANDARD,
    max_tokens: int = 8192,
    temperature: float = 0.2,
    fmt: Format = "json",
) -> PlanOutcome:
    """Plan `goal` on `repo`, asking for the answer in `fmt` (JSON or the `<plan>` XML
    document; either is read); raises what `chat` raises (see the module docstring)."""
    conversation = planprompt.messages(goal, repo, fmt=fmt)
    usage = Usage()
    errors: list[str] = []
    for attempt in range(1, ATTEMPTS + 1):
        reply = await chat(
            ChatRequest(
                messages=conversation,
                tier=tier,
                caller=CALLER,
                goal_id=goal.goal_id,
                options={"max_tokens": max_tokens, "temperature": temperature},
            )
        )
        usage = usage.add(reply)
        found, errors = review(reply.content, goal, repo)
        if found is not None and not errors:
            log.info("plan.made", extra={"goal_id": goal.goal_id, "attempt": attempt})
            return Planned(found, repo.head, attempt, usage)
        # the errors quote the model's answer: counted here, shown on the goal, never logged
        log.warning(
            "plan.refused",
            extra={"goal_id": goal.goal_id, "attempt": attempt, "errors": len(errors)},
        )
        conversation = [*conversation, *planprompt.retry(reply.content, errors, fmt)]
    return PlanRefused(tuple(errors), ATTEMPTS, usage)


async def plan_goal(
    chat: Chat,
    cache: RepoCache,
    goal: GoalBrief,
    *,
    tier: Tier = Tier.STANDARD,
    max_tokens: int = 8192,
    fmt: Format = "json",
) -> PlanOutcome:
    """Fetch the goal's repo into the cache, then `make_plan` on it. Also raises
    `RepoUnavailableError` (git could not fetch: retry later) and `InvalidError` (field `repo`:
    the URL carries credentials)."""
    repo = await cache.snapshot(goal.repo)
    return await make_plan(chat, goal, repo, tier=tier, max_tokens=max_tokens, fmt=fmt)
