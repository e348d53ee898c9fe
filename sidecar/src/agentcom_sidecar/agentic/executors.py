"""The `ollama` and `claude` executors: the agent loop behind the sidecar's Executor interface.

Both run the same loop through the llm-registry gateway and ask it by tier, so its tier chain,
warm-model scoring and fallback choose the model: `X-AgentCom-Tier` is the task's tier for
`ollama` and always `complex` for `claude`, and the model asked for is that tier's name. A model
is asked for by name only when the task names one (`metadata.model`) or the settings fix one;
the gateway then tries it first and falls back along the tier's chain. (Asking for a fixed
model skipped the chain: a trivial task got 503 `no_endpoint_available` while a healthy
`local-small` endpoint stood by.) The sidecar's registry calls `build(name, settings)`.
"""

import asyncio
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal

import httpx

from agentcom_common.contracts.agent import ToolCallReport
from agentcom_common.contracts.task import TaskView
from agentcom_sidecar import namespaces
from agentcom_sidecar.agentic import loop, parser, prompt, tools
from agentcom_sidecar.agentic.gateway import ChatClient
from agentcom_sidecar.agentic.sandbox import Sandbox
from agentcom_sidecar.agentic.settings import AgenticSettings
from agentcom_sidecar.executors.base import ExecutionContext, ExecutionResult, Executor

log = logging.getLogger(__name__)

ExecutorName = Literal["ollama", "claude"]
TIERS: Final = frozenset({"trivial", "standard", "complex"})
NAMES: Final[tuple[ExecutorName, ...]] = ("ollama", "claude")
_SEQ_PER_ATTEMPT: Final = 100_000  # tool_call seq stays increasing across corrective attempts


def task_model(task: TaskView) -> str | None:
    """The model the task names (`metadata.model`), if any."""
    model: object = task.metadata.get("model")
    return model.strip() if isinstance(model, str) and model.strip() else None


class AgentExecutor:
    """Runs the agent loop for one attempt of a task in its workspace."""

    def __init__(
        self,
        name: ExecutorName,
        settings: AgenticSettings,
        model: str | None,
        tier: str | None = None,
        hidden: Sequence[Path] = (),
    ) -> None:
        self.name = name
        self._settings = settings
        self._model = model
        self._tier = tier
        self._hidden = tuple(hidden)

    def _limits(self, ctx: ExecutionContext) -> loop.LoopLimits:
        s = self._settings
        return loop.LoopLimits(
            max_iterations=s.max_iterations(self._tier or ctx.task.complexity.tier.value),
            token_budget=s.agentic_token_budget,
            repeat_limit=s.agentic_repeat_limit,
            max_nudges=s.agentic_max_nudges,
            chat_timeout=s.agentic_chat_timeout.total_seconds(),
            deadline=ctx.deadline,
            observation_cap=s.agentic_observation_cap,
            max_calls_per_turn=s.agentic_max_calls_per_turn,
        )

    def _reporter(self, ctx: ExecutionContext) -> loop.ToolReporter | None:
        emit = ctx.emit
        if emit is None:
            return None
        seq = iter(range((ctx.attempt - 1) * _SEQ_PER_ATTEMPT, ctx.attempt * _SEQ_PER_ATTEMPT))

        async def report(
            call: parser.ToolCall, obs: tools.Observation, t_in: int, t_out: int
        ) -> None:
            await emit(
                ToolCallReport(
                    kind="tool_call",
                    agent_id=ctx.agent_id,
                    task_id=ctx.task.id,
                    generation=ctx.generation,
                    seq=next(seq),
                    tool=call.name[:64],
                    arguments=loop.summarise_arguments(call),
                    result=loop.summarise_observation(obs),
                    ok=obs.ok,
                    error_code=obs.error_code,
                    duration_ms=obs.duration_ms,
                    tokens_in=t_in,
                    tokens_out=t_out,
                )
            )

        return report

    async def run(self, ctx: ExecutionContext) -> ExecutionResult:
        await asyncio.to_thread(namespaces.available)  # the one-time probe, off the event loop
        tier = self._tier or _known(ctx.task.complexity.tier.value) or "standard"
        headers = {"X-AgentCom-Task": ctx.task.id, "X-AgentCom-Tier": tier}
        model = task_model(ctx.task) or self._model or tier  # a tier name: "route by tier"
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="agentcom-home-") as home:
            sandbox = Sandbox(
                ctx.workspace, self._settings, env=ctx.env, hidden=self._hidden, scratch=Path(home)
            )
            async with httpx.AsyncClient() as http:
                client = ChatClient(http, self._settings, model, headers)
                agent = loop.AgentLoop(client, sandbox, self._limits(ctx), self._reporter(ctx))
                messages = prompt.initial_messages(
                    ctx.task, ctx.attempt, ctx.feedback, sandbox.isolated
                )
                outcome = await agent.run(messages)
        log.info(
            "agent_loop.stopped",
            extra={
                "task_id": ctx.task.id,
                "executor": self.name,
                "stop_reason": outcome.stop_reason,
                "iterations": outcome.iterations,
                "tokens_in": outcome.tokens_in,
                "tokens_out": outcome.tokens_out,
            },
        )
        isolation = "namespaces" if sandbox.isolated else "none"
        return to_result(outcome, time.perf_counter() - started, isolation)


def to_result(
    outcome: loop.LoopOutcome, seconds: float, isolation: str = "none"
) -> ExecutionResult:
    """The loop's outcome as the verification loop reads it; `details` keeps done/remaining."""
    if outcome.stop_reason == "finished":
        summary = outcome.answer or "The model finished without a summary."
    else:
        summary = f"Stopped early ({outcome.stop_reason}): {outcome.error}. " + (
            f"Done: {'; '.join(outcome.done)}." if outcome.done else "Nothing was changed."
        )
    return ExecutionResult(
        ok=outcome.stop_reason == "finished",
        stop_reason=outcome.stop_reason,
        summary=summary[:4000],
        output_tail=outcome.answer[-4000:],
        tokens_in=outcome.tokens_in,
        tokens_out=outcome.tokens_out,
        cost_usd=round(outcome.cost_usd, 6),
        details={
            "partial": outcome.partial,
            "termination_reason": outcome.stop_reason,
            "iterations": outcome.iterations,
            "tool_calls": outcome.tool_calls,
            "model": outcome.model,
            "done": list(outcome.done),
            "remaining": list(outcome.remaining),
            "files_changed": list(outcome.files_changed),
            "duration_s": round(seconds, 3),
            "isolation": isolation,
        },
    )


def _known(tier: str | None) -> str | None:
    """A tier the gateway knows; anything else routes as standard (never a 422 mid-task)."""
    return tier if tier in TIERS else None


def build(name: str, settings: AgenticSettings, hidden: Sequence[Path] = ()) -> Executor:
    """The executor called `name` ("ollama" or "claude"); `hidden` = paths commands must not see.

    Raises ValueError for any other name (the registry owns `shell`).
    """
    if name == "ollama":
        return AgentExecutor("ollama", settings, settings.agentic_ollama_model, hidden=hidden)
    if name == "claude":
        model = settings.agentic_claude_model
        return AgentExecutor("claude", settings, model, tier="complex", hidden=hidden)
    raise ValueError(f"no agent executor {name!r}; choose one of {', '.join(NAMES)}")
