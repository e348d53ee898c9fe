"""The executor interface: one attempt at a task in its workspace, reported as it goes.

The verification loop calls `Executor.run` once per attempt. A corrective attempt gets the
failed checks of the previous one in `feedback`, so an LLM executor can fix what failed and a
shell executor can simply run again. Executors never raise for a task that went wrong: they
return an `ExecutionResult` with `ok=False` and a `stop_reason`; an exception means a bug or a
broken sidecar, and the caller reports the attempt as failed with that error.
"""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from agentcom_common.contracts.agent import Progress, ToolCallReport
from agentcom_common.contracts.task import TaskView

Report = Progress | ToolCallReport
ReportSink = Callable[[Report], Awaitable[None]]
"""Sends a progress or tool_call report; the sidecar journals it and delivers it at least once."""

StopReason = Literal[
    "finished",  # the executor ran to its natural end (exit code / final answer)
    "deadline",  # the wall-clock deadline passed; the process group was killed
    "max_iterations",  # the agent loop hit its tier's iteration limit
    "repeated_tool_call",  # the model repeated an identical tool call
    "token_budget",  # the task's token budget ran out
    "budget_exhausted",  # the llm-registry ledger refused the call
    "cancelled",  # the hub cancelled the assignment
    "error",  # the executor could not run (model unreachable, command not found)
]


@dataclass(frozen=True, slots=True)
class ExecutionContext:
    task: TaskView
    """The task as the hub sent it."""
    agent_id: str
    generation: int
    workspace: Path
    """The task's checkout on its own branch; executors never touch anything outside it."""
    deadline: float
    """`asyncio.get_running_loop().time()` by which the attempt must have stopped."""
    attempt: int = 1
    """1 for the first attempt; more for corrective attempts after failed verification."""
    feedback: str | None = None
    """For a corrective attempt: the failed checks of the previous one, as text for a model."""
    env: Mapping[str, str] = field(default_factory=dict[str, str])
    """The scrubbed environment for child processes: no tokens, no keys."""
    emit: ReportSink | None = None


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    ok: bool
    stop_reason: StopReason
    summary: str
    """One paragraph for the task result and the pull request body."""
    exit_code: int | None = None
    output_tail: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    details: Mapping[str, Any] = field(default_factory=dict[str, Any])


class Executor(Protocol):
    """One way of doing a task: `shell`, `ollama`, `claude`."""

    name: str

    async def run(self, ctx: ExecutionContext) -> ExecutionResult: ...
