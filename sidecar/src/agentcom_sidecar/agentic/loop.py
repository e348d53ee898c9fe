"""The ReAct loop: ask the model, run the tools it calls, feed back observations, repeat.

Stop rules (`LoopOutcome.stop_reason`), checked in this order each turn:
- `deadline`: the attempt's wall-clock deadline; a model call or a command still running is
  cut off (its process group killed);
- `token_budget`: tokens in + out of this attempt reached the budget;
- `max_iterations`: the tier's limit of model turns (5 / 10 / 20 by default);
- `budget_exhausted`: the gateway's ledger refused the call;
- `repeated_tool_call`: the same calls, with the same arguments, `repeat_limit` turns in a row
  (the repeated call is not run again);
- `error`: the gateway failed, or the model gave neither a call nor an answer `max_nudges + 1`
  times in a row;
- `finished`: the model answered without a tool call.
Whatever stopped it, the files already written stay, and the outcome lists what was done and
what remains so the verification loop can check the current state and report `partial_pass`.
"""

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from opentelemetry import trace

from agentcom_sidecar.agentic import gateway, parser, tools
from agentcom_sidecar.agentic.sandbox import Sandbox
from agentcom_sidecar.executors.base import StopReason

NUDGE = (
    "Please use the available tools to complete the task. Do not just describe what to do: "
    "call the tools, or answer with a summary if the task is done."
)

ToolReporter = Callable[[parser.ToolCall, tools.Observation, int, int], Awaitable[None]]
"""Told of every executed call: the call, its observation, and the turn's tokens in and out."""


@dataclass(frozen=True, slots=True)
class LoopLimits:
    max_iterations: int
    token_budget: int
    repeat_limit: int
    max_nudges: int
    chat_timeout: float
    deadline: float
    """`loop.time()` by which the loop must have stopped."""
    observation_cap: int
    max_calls_per_turn: int = 8


@dataclass(slots=True)
class LoopOutcome:
    stop_reason: StopReason = "finished"
    iterations: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    answer: str = ""
    error: str | None = None
    model: str = ""
    tool_calls: int = 0
    done: list[str] = field(default_factory=list[str])
    remaining: list[str] = field(default_factory=list[str])
    files_changed: list[str] = field(default_factory=list[str])

    @property
    def partial(self) -> bool:
        """Stopped by a limit, not by the model's own final answer."""
        return self.stop_reason != "finished"


def summarise_arguments(call: parser.ToolCall, limit: int = 200) -> str:
    """The arguments for a report: long strings (file content) replaced by their size."""
    shown = {
        k: (f"<{len(v)} chars>" if isinstance(v, str) and len(v) > 80 else v)
        for k, v in call.arguments.items()
    }
    text = json.dumps(shown, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def summarise_observation(obs: tools.Observation, limit: int = 200) -> str:
    if not obs.ok:
        text = f"{obs.error_code}: {obs.error}"
    elif obs.tool == "run_command" and obs.data is not None:
        text = f"exit {obs.data.get('exit_code')}"
    elif obs.data is not None:
        text = ", ".join(f"{k}={v}" for k, v in obs.data.items() if not isinstance(v, str | list))
        text = text or "ok"
    else:
        text = "ok"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def for_model(obs: tools.Observation, cap: int) -> str:
    """The observation as JSON for the model, at most about `cap` characters."""
    text = obs.model_dump_json(exclude_none=True)
    if len(text) <= cap or obs.data is None:
        return text
    share = max(cap // (2 * max(len(obs.data), 1)), 64)
    data = {
        k: (v[:share] + "...[truncated]" if isinstance(v, str) and len(v) > share else v)
        for k, v in obs.data.items()
    }
    text = obs.model_copy(update={"data": data, "truncated": True}).model_dump_json(
        exclude_none=True
    )
    if len(text) <= cap:
        return text
    preview = {"tool": obs.tool, "ok": obs.ok, "truncated": True, "preview": text[:cap]}
    return json.dumps(preview)


def _assistant(reply: gateway.ChatReply, calls: Sequence[parser.ToolCall]) -> dict[str, Any]:
    native = [{"function": {"name": c.name, "arguments": c.arguments}} for c in calls]
    return {
        "role": "assistant",
        "content": str(reply.message.get("content") or ""),
        "tool_calls": native,
    }


def _record(outcome: LoopOutcome, call: parser.ToolCall, obs: tools.Observation) -> None:
    outcome.tool_calls += 1
    if not obs.ok or obs.data is None:
        return
    if call.name == "write_file":
        path = str(obs.data.get("path"))
        outcome.done.append(f"wrote {path} ({obs.data.get('bytes_written')} bytes)")
        if path not in outcome.files_changed:
            outcome.files_changed.append(path)
    elif call.name == "run_command":
        command = call.arguments.get("command")
        parts = cast(list[object], command) if isinstance(command, list) else [command]
        shown = " ".join(map(str, parts))
        outcome.done.append(f"ran `{shown[:120]}`: exit {obs.data.get('exit_code')}")


class AgentLoop:
    """One attempt's conversation; `run()` returns when a stop rule fires."""

    def __init__(
        self,
        client: gateway.ChatClient,
        sandbox: Sandbox,
        limits: LoopLimits,
        report: ToolReporter | None = None,
    ) -> None:
        self._client = client
        self._sandbox = sandbox
        self._limits = limits
        self._report = report
        self._specs = tools.function_specs()
        self._turn_keys: list[str] = []
        self.outcome = LoopOutcome(model=client.model)

    def _left(self) -> float:
        return self._limits.deadline - asyncio.get_running_loop().time()

    async def run(self, messages: list[dict[str, Any]]) -> LoopOutcome:
        out, nudges = self.outcome, 0
        while (reason := self._limit_reached()) is None:
            out.iterations += 1
            reply = await self._ask(messages)
            if reply is None:
                break
            parsed = parser.parse(reply.message, tools.TOOLS.keys())
            if not parsed.calls:
                if parsed.text:
                    out.answer = parsed.text
                    return out
                nudges += 1
                if nudges > self._limits.max_nudges:
                    return self._stop("error", "the model gave neither a tool call nor an answer")
                messages.append({"role": "assistant", "content": ""})
                messages.append({"role": "user", "content": NUDGE})
                continue
            nudges = 0
            out.answer = parsed.text or out.answer
            if self._repeated(parsed.calls):
                self._pending(parsed.calls)
                return self._stop("repeated_tool_call", "the model repeated the same tool calls")
            messages.append(_assistant(reply, parsed.calls))
            if not await self._execute(parsed.calls, reply, messages):
                return self._stop("deadline", "the deadline passed while a tool was running")
        else:
            self._stop(reason, f"stopped at {reason} after {out.iterations} turns")
        return out

    def _limit_reached(self) -> StopReason | None:
        out, limits = self.outcome, self._limits
        if self._left() <= 0:
            return "deadline"
        if out.tokens_in + out.tokens_out >= limits.token_budget:
            return "token_budget"
        if out.iterations >= limits.max_iterations:
            return "max_iterations"
        return None

    async def _ask(self, messages: list[dict[str, Any]]) -> gateway.ChatReply | None:
        left = self._left()
        timeout = min(self._limits.chat_timeout, left)
        try:
            async with asyncio.timeout(timeout):
                reply = await self._client.chat(messages, self._specs, timeout)
        except TimeoutError:
            why = "deadline" if timeout >= left else "error"
            self._stop(why, f"the model did not answer within {timeout:.3g} s")
            return None
        except gateway.BudgetRefusedError as exc:
            self._stop("budget_exhausted", f"the gateway refused: {exc}")
            return None
        except gateway.GatewayError as exc:
            self._stop("error", str(exc))
            return None
        out = self.outcome
        out.tokens_in += reply.tokens_in
        out.tokens_out += reply.tokens_out
        out.cost_usd += reply.cost_usd
        out.model = reply.model
        return reply

    def _repeated(self, calls: Sequence[parser.ToolCall]) -> bool:
        self._turn_keys.append("\n".join(c.key() for c in calls))
        recent = self._turn_keys[-self._limits.repeat_limit :]
        return len(recent) == self._limits.repeat_limit and len(set(recent)) == 1

    async def _execute(
        self,
        calls: Sequence[parser.ToolCall],
        reply: gateway.ChatReply,
        messages: list[dict[str, Any]],
    ) -> bool:
        """Run the turn's calls in order; False if the deadline cut one off."""
        for index, call in enumerate(calls):
            if index >= self._limits.max_calls_per_turn:
                obs = tools.Observation(
                    tool=call.name,
                    ok=False,
                    error_code="too_many_calls",
                    error=f"not run: at most {self._limits.max_calls_per_turn} calls per turn",
                )
                messages.append(
                    {"role": "tool", "tool_name": call.name, "content": for_model(obs, 512)}
                )
                continue
            try:
                async with asyncio.timeout(max(self._left(), 0)):
                    obs = await _traced_call(call, self._sandbox)
            except TimeoutError:
                self._pending(calls[index:])
                return False
            _record(self.outcome, call, obs)
            if self._report is not None:
                first = index == 0  # the turn's tokens are reported once, with its first call
                await self._report(
                    call, obs, reply.tokens_in if first else 0, reply.tokens_out if first else 0
                )
            content = for_model(obs, self._limits.observation_cap)
            messages.append({"role": "tool", "tool_name": call.name, "content": content})
        return True

    def _pending(self, calls: Sequence[parser.ToolCall]) -> None:
        for call in calls:
            self.outcome.remaining.append(f"not run: {call.name} {summarise_arguments(call)}")

    def _stop(self, reason: StopReason, why: str) -> LoopOutcome:
        out = self.outcome
        out.stop_reason = reason
        out.error = why
        out.remaining.insert(0, f"{why}; the model had not said the task was done")
        if out.answer:
            out.remaining.append(f"the model's last words: {out.answer[:500]}")
        return out


async def _traced_call(call: parser.ToolCall, sandbox: Sandbox) -> tools.Observation:
    """The tool call in its own span (gen_ai `execute_tool`), a child of the task's run."""
    with trace.get_tracer(__name__).start_as_current_span(
        f"execute_tool {call.name}",
        attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": call.name},
    ) as span:
        obs = await tools.call(call.name, call.arguments, sandbox)
        span.set_attribute("agentcom.tool.ok", obs.ok)
        return obs
