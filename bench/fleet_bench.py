"""A large simulated fleet (issue 22): the scheduler's heartbeats, matching and detection with
10,000 agents, against 1,000 in the same run as the baseline.

    uv run python bench/fleet_bench.py                      # 1,000 then 10,000 agents
    uv run python bench/fleet_bench.py --agents 5000 --baseline 500 --rate 10 --seconds 20

Each size is one `bench/scheduler_bench.py` configuration on fresh servers (its own embedded
Postgres and nats-server with auth on, the queue and the scheduler as their own processes):
N agents registered over HTTP, then played by this process as simulated sidecars over 8
shared NATS connections, speaking the sidecar's protocol on its subjects (hello, a heartbeat
every 5 s each, `accepted` then `completed` for every assignment on the agent's inbox).
So 10,000 agents offer the scheduler 2,000 heartbeats a second while tasks arrive at a low
steady rate (20/s by default: the fleet's size is the load here, not the task rate), and then
V agents go quiet after accepting a task (detection = last heartbeat -> the task handed back).

Baseline, not peer: no peer runs agents with presence and fenced reassignment (see
scheduler_bench.py); the ratio is each figure at N over the same figure at the baseline size,
so "keeps its figures" reads as a ratio near 1. Prints a table, then one JSON object as the
very last line of stdout.
"""

import argparse
import asyncio
import json
import sys
from typing import Any

import scheduler_bench
from rich.console import Console
from rich.table import Table

Json = dict[str, Any]
COMPARED = (
    "register_s",
    "assign_p50_ms",
    "assign_p99_ms",
    "silence_to_requeue_p50_s",
    "silence_to_requeue_max_s",
    "service_cpu_ms_per_task",
    "service_cpu_per_s",
)


def one_size(args: argparse.Namespace, agents: int) -> Json:
    run_args = argparse.Namespace(**(vars(args) | {"agents": agents}))
    result = asyncio.run(scheduler_bench.run(run_args))
    window = result["seconds"] + result["drain_s"]
    result["heartbeats_offered_per_s"] = round(agents / scheduler_bench.HEARTBEAT_S, 1)
    # CPU seconds of the services per wall second of load: 2.0 is both cores
    result["service_cpu_per_s"] = round(result["service_cpu_s"] / window, 3) if window else None
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="The scheduler with a large simulated fleet.")
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--baseline", type=int, default=1_000)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--victims", type=int, default=10)
    parser.add_argument("--drain", type=float, default=300.0)
    parser.add_argument("--set", action="append", default=[], metavar="AGENTCOM_NAME=VALUE")
    args = parser.parse_args()
    args.logs, args.trace = None, False  # what scheduler_bench.run reads besides
    results = [one_size(args, n) for n in (args.baseline, args.agents)]
    base, big = results
    ratios: Json = {}
    for key in COMPARED:
        if isinstance(base.get(key), int | float) and isinstance(big.get(key), int | float):
            ratios[f"ratio_{key}"] = round(big[key] / base[key], 2) if base[key] else None
    table = Table(title="fleet bench", title_justify="left")
    table.add_column("measure")
    table.add_column(f"{args.baseline:,} agents", justify="right")
    table.add_column(f"{args.agents:,} agents", justify="right")
    table.add_column("ratio", justify="right")
    for key in big:
        ratio = ratios.get(f"ratio_{key}")
        table.add_row(
            key, str(base.get(key)), str(big.get(key)), "" if ratio is None else str(ratio)
        )
    Console().print(table)
    sys.stdout.write(json.dumps({"baseline": base, "fleet": big} | ratios) + "\n")


if __name__ == "__main__":
    main()
