"""What the agent sandbox costs per tool call: run_command with and without namespaces.

    uv run python bench/sandbox_bench.py [--runs 50]

For each isolation mode (`none` = own process group, rlimits, scrubbed env; `namespaces` =
also unshare user/mount/pid/net and the read-only remount), times `run_command(["true"])`
and a `search_files` over a small tree, through `tools.call` as the agent loop does. The
peer is the same call with `subprocess` directly (no sandbox). Prints a table, then one JSON
object as the last line. Numbers on a shared machine are noisy; compare ratios in one run.
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from agentcom_sidecar import namespaces
from agentcom_sidecar.agentic import tools
from agentcom_sidecar.agentic.sandbox import Sandbox
from agentcom_sidecar.agentic.settings import AgenticSettings


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 2),
    }


async def time_calls(sandbox: Sandbox, name: str, args: dict[str, Any], runs: int) -> list[float]:
    samples: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        obs = await tools.call(name, args, sandbox)
        samples.append(time.perf_counter() - started)
        assert obs.ok, obs
    return samples


def time_plain(runs: int, cwd: Path) -> list[float]:
    samples: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(["true"], cwd=cwd, check=True)
        samples.append(time.perf_counter() - started)
    return samples


async def main(runs: int) -> None:
    ws = Path(tempfile.mkdtemp(prefix="agentcom-sandbox-bench-"))
    for i in range(50):
        (ws / f"f{i}.py").write_text("def f():\n    return 1\n" * 20)
    results: dict[str, Any] = {"runs": runs, "plain_subprocess": summary(time_plain(runs, ws))}
    modes: list[Literal["none", "namespaces"]] = ["none"]
    if namespaces.available():
        modes.append("namespaces")
    for mode in modes:
        sandbox = Sandbox(ws, AgenticSettings(agentic_isolation=mode), env=dict(os.environ))
        command = await time_calls(sandbox, "run_command", {"command": ["true"]}, runs)
        search = await time_calls(sandbox, "search_files", {"pattern": "return"}, runs)
        results[f"run_command_{mode}"] = summary(command)
        results[f"search_files_{mode}"] = summary(search)
    lines = [f"{'case':<28}{'median ms':>12}{'p95 ms':>10}"]
    for case, value in results.items():
        if isinstance(value, dict):
            lines.append(f"{case:<28}{value['median_ms']:>12}{value['p95_ms']:>10}")
    sys.stdout.write("\n".join(lines) + "\n" + json.dumps(results) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Time the agent sandbox per tool call.")
    parser.add_argument("--runs", type=int, default=50)
    asyncio.run(main(parser.parse_args().runs))
