"""How long the `agentcom` command takes to start and answer, against `python -c pass`.

Starts its own embedded Postgres and nats-server and the queue as its own process (as
`queue_bench.py` does), issues an admin token, then times each command N times as a user runs
it (the installed `agentcom` script, a fresh process each run): `--version`, `token` (reads a
file), `task list --json` (one HTTP call to the queue) and `task --help`. The peer is the
interpreter's own floor, `python -c pass`; the ratio is the command's median over the floor's.

    uv run python bench/cli_bench.py            # 20 runs of each
    uv run python bench/cli_bench.py --runs 5

Prints a table, then one JSON line.
"""

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from agentcom_common import auth, db
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import ServiceProcess

sys.path.insert(0, str(Path(__file__).parent))
from queue_bench import prepare_databases, servers  # the same servers

AGENTCOM = str(Path(sys.executable).parent / "agentcom")
progress = Console(stderr=True)


def timed(argv: list[str], env: dict[str, str], runs: int) -> list[float]:
    """Wall-clock seconds of each run after one warm-up run (which writes the bytecode cache,
    as a user's first call does); a failing run ends the bench (it would time nothing)."""
    seconds: list[float] = []
    for _ in range(runs + 1):
        start = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        seconds.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {done.stderr or done.stdout}")
    return seconds[1:]


async def admin_token(database_url: str) -> str:
    engine = db.create_engine(CommonSettings(database_url=SecretStr(database_url)), pool_size=1)
    try:
        await auth.migrate(engine)
        return (await auth.issue(engine, auth.Role.ADMIN, "cli bench")).token
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description="Time the agentcom command's start.")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with servers() as srv:
        asyncio.run(prepare_databases(srv))
        queue = ServiceProcess("queue", srv.nats_url, srv.layout.url, srv.root / "queue.log")
        queue.start(deadline=300)  # a loaded machine (tests of others) can take minutes
        try:
            token = asyncio.run(admin_token(srv.layout.url))
            # PYTHONDONTWRITEBYTECODE (set in some sandboxes) would make every start compile
            # every module again: ~1 s here, and not what a user's machine does
            base = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith("AGENTCOM_") and k != "PYTHONDONTWRITEBYTECODE"
            }
            env = base | {
                "AGENTCOM_TOKEN": token,
                "AGENTCOM_PORT_OFFSET": queue.env["AGENTCOM_PORT_OFFSET"],
                "AGENTCOM_HOME": str(srv.root / "home"),
            }
            cases = {
                "python -c pass (peer)": [sys.executable, "-c", "pass"],
                "agentcom --version": [AGENTCOM, "--version"],
                "agentcom token": [AGENTCOM, "token"],
                "agentcom task --help": [AGENTCOM, "task", "--help"],
                "agentcom task list --json": [AGENTCOM, "task", "list", "--json"],
            }
            results: dict[str, list[float]] = {}
            for name, argv in cases.items():
                progress.print(f"timing {name} ({args.runs} runs)")
                results[name] = timed(argv, env, args.runs)
        finally:
            queue.stop()
    floor = statistics.median(results["python -c pass (peer)"])
    table = Table(title=f"CLI start ({args.runs} runs, {platform.python_version()})")
    for column in ("command", "p50 ms", "max ms", "ratio to python -c pass"):
        table.add_column(column)
    summary: dict[str, object] = {"bench": "cli", "runs": args.runs}
    for name, seconds in results.items():
        p50 = statistics.median(seconds)
        table.add_row(name, f"{p50 * 1000:.0f}", f"{max(seconds) * 1000:.0f}", f"{p50 / floor:.1f}")
        summary[name] = {"p50_ms": round(p50 * 1000, 1), "max_ms": round(max(seconds) * 1000, 1)}
    Console().print(table)
    sys.stdout.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
