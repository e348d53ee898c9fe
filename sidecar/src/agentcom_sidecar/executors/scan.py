"""The `scan` executor: the improvement scanners of `agentcom_sidecar.scanning` over the task's
workspace. It reads the repo's files and runs none of them (ruff is the agent's own binary), so
it needs no `allow_hub_commands`; an agent opts in by listing `scan` in `executors`. It changes
nothing, so nothing is pushed; the findings are the result (`details.scan`, a `ScanResult`)."""

import asyncio

from agentcom_sidecar.executors.base import ExecutionContext, ExecutionResult
from agentcom_sidecar.scanning import languages


class ScanExecutor:
    name = "scan"

    async def run(self, ctx: ExecutionContext) -> ExecutionResult:
        remaining = max(0.01, ctx.deadline - asyncio.get_running_loop().time())
        try:
            async with asyncio.timeout(remaining):
                result = await languages.scan(ctx.workspace, ctx.env)
        except TimeoutError:
            return ExecutionResult(False, "deadline", "the scan passed its deadline")
        summary = (
            f"{len(result.findings)} findings ({', '.join(result.languages) or 'no language'})"
        )
        if result.skipped:
            summary += f"; skipped {', '.join(sorted(result.skipped))}"
        return ExecutionResult(
            True, "finished", summary, 0, details={"scan": result.model_dump(mode="json")}
        )
