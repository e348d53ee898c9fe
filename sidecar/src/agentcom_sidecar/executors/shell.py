"""The shell executor: runs `task.metadata["command"]` (an argv list) in the workspace.

Opt-in per agent (`allow_hub_commands`); the accept checks refuse it otherwise. The task's own
data reaches the command through files named in the environment (`AGENTCOM_TASK_FILE`,
`AGENTCOM_FEEDBACK_FILE`) and `AGENTCOM_ATTEMPT`, never by building a shell string. Where the
agent's config allows, it runs in the namespace sandbox (`registry.confinement`): it cannot read
the agent's config (tokens) or state dir, nor write outside its workspace.
"""

import asyncio
from collections.abc import Callable
from typing import cast

from agentcom_common.contracts.task import TaskView
from agentcom_sidecar import meters, namespaces, processes
from agentcom_sidecar.executors.base import ExecutionContext, ExecutionResult


def command_of(task: TaskView) -> list[str] | None:
    """The argv of a shell task, or None if it has no valid one."""
    command: object = task.metadata.get("command")
    if not isinstance(command, list) or not command:
        return None
    parts = cast("list[object]", command)
    if all(isinstance(part, str) and part for part in parts):
        return [str(part) for part in parts]
    return None


class ShellExecutor:
    """One instance per task: `on_line` feeds progress, `on_start` journals the process group."""

    name = "shell"

    def __init__(
        self,
        on_line: processes.LineSink | None = None,
        on_start: Callable[[int], None] | None = None,
        grace: float = 5.0,
        confine: namespaces.Confinement | None = None,
    ) -> None:
        self._on_line, self._on_start, self._grace = on_line, on_start, grace
        self._confine = confine

    async def run(self, ctx: ExecutionContext) -> ExecutionResult:
        argv = command_of(ctx.task)
        if argv is None:
            return ExecutionResult(False, "error", 'metadata["command"] must be a list of strings')
        loop = asyncio.get_running_loop()
        started = loop.time()
        remaining = max(0.01, ctx.deadline - started)
        try:
            done = await processes.run(
                argv,
                ctx.workspace,
                timeout=remaining,
                env=ctx.env,
                on_line=self._on_line,
                on_start=self._on_start,
                grace=self._grace,
                confine=self._confine,
            )
        except (FileNotFoundError, PermissionError) as exc:
            return ExecutionResult(False, "error", f"cannot run {argv[0]}: {exc.strerror}")
        outcome = "timeout" if done.timed_out else "ok" if done.exit_code == 0 else "failed"
        meters.count_command("shell", self._confine is not None, outcome, loop.time() - started)
        if done.timed_out:
            return ExecutionResult(
                False, "deadline", f"{argv[0]} passed its deadline and was killed", None, done.tail
            )
        summary = f"{argv[0]} exited with {done.exit_code}"
        return ExecutionResult(done.exit_code == 0, "finished", summary, done.exit_code, done.tail)
