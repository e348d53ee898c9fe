"""The `scan` executor: the improvement scanners of `agentcom_sidecar.scanning` over the task's
workspace. It reads the repo's files and runs none of them (ruff and pyright are the agent's own
binaries), so it needs no `allow_hub_commands`; an agent opts in by listing `scan` in
`executors`. Where the machine can make namespaces, pyright runs in the sandbox with no network
and the agent's config and state dir hidden (`hidden`), whatever `shell_isolation` says: it is
no shell task. It changes nothing, so nothing is pushed; the findings are the result
(`details.scan`, a `ScanResult`)."""

import asyncio
from pathlib import Path

from agentcom_sidecar import namespaces
from agentcom_sidecar.executors.base import ExecutionContext, ExecutionResult
from agentcom_sidecar.scanning import languages


class ScanExecutor:
    name = "scan"

    def __init__(self, hidden: tuple[Path, ...] = ()) -> None:
        self._hidden = hidden

    async def run(self, ctx: ExecutionContext) -> ExecutionResult:
        remaining = max(0.01, ctx.deadline - asyncio.get_running_loop().time())
        # probed once per process (~20 ms), in a thread: it runs `unshare`
        sandbox = await asyncio.to_thread(namespaces.available)
        confine = namespaces.Confinement(self._hidden) if sandbox else None
        try:
            async with asyncio.timeout(remaining):
                result = await languages.scan(ctx.workspace, ctx.env, confine)
        except TimeoutError:
            return ExecutionResult(False, "deadline", "the scan passed its deadline")
        summary = (
            f"{len(result.findings)} findings ({', '.join(result.languages) or 'no language'})"
        )
        if result.skipped:
            summary += f"; skipped {', '.join(sorted(result.skipped))}"
        return ExecutionResult(
            True,
            "finished",
            summary,
            0,
            details={
                "scan": result.model_dump(mode="json"),
                "isolation": "namespaces" if sandbox else "none",
            },
        )
