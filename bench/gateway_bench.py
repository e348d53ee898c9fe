"""Gateway overhead: the same chat requests direct to a fast fake upstream and through ours,
and through the LiteLLM proxy (one worker, same upstream) for a ratio.

    uv run python bench/gateway_bench.py                 # 2,000 requests per cell
    uv run python bench/gateway_bench.py --quick         # 400 requests per cell
    uv run python bench/gateway_bench.py --no-litellm    # skip the peer

Processes (all on loopback, all stopped at the end): an embedded Postgres (durable) and a
nats-server as the test plugin starts them; the fake upstream (`tests/servers/
fake_llm.py`, aiohttp on uvloop, its own process, speaking Ollama and OpenAI); the registry as
`python -m agentcom_llm_registry` (one uvicorn worker, default settings: ledger journaled
and flushed every 500 ms, a routed event per call); LiteLLM as
`uvx --from 'litellm[proxy]' litellm --config ... --num_workers 1` in its own uv-managed env,
so it never enters the workspace lock. This process is the load generator (aiohttp, keep-alive).

Cells: protocol (ollama `/api/chat`, openai `/v1/chat/completions`) x target (direct, ours,
litellm for openai) x concurrency (1, 10). Non-streaming, 1 short message. Added latency =
target percentile - direct percentile at the same concurrency. Prints a table, then one JSON
object as the last line of stdout.
"""

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from rich.console import Console
from rich.table import Table

from agentcom_common import embedded
from agentcom_common.testing import ChildProcess, free_port, shared_tmpdir, start_nats

Json = dict[str, Any]
progress = Console(stderr=True)
TOKEN = "agc_bench_admin_token_0123456789abcdef0123"


def run_upstream(port: int) -> None:
    """`--upstream PORT` mode: serve the fake until killed."""
    import uvloop

    # The fake lives with the tests' servers, not in a runtime wheel.
    sys.path.insert(0, str(Path(__file__).parent.parent / "tests" / "servers"))
    from fake_llm import FakeLLM

    async def serve() -> None:
        server = FakeLLM("up", models=["bench-ollama", "bench-openai"], port=port)
        await server.start()
        server.chats = _Discard()
        await asyncio.Event().wait()

    uvloop.run(serve())


class _Discard(list[Json]):
    """The fake records every request; the benchmark does not need them kept."""

    def append(self, _item: Json) -> None:
        return None


@contextlib.contextmanager
def process(
    cmd: list[str], log: Path, env: dict[str, str] | None = None
) -> Generator[subprocess.Popen[bytes]]:
    """`cmd` as a child (testing.ChildProcess) for the `with` block, output to `log`."""
    log.unlink(missing_ok=True)
    child = ChildProcess(log, stop_timeout=20)
    child.spawn(cmd, dict(os.environ) if env is None else env)
    assert child.process is not None
    try:
        yield child.process
    finally:
        child.stop()


def wait_http(
    url: str,
    proc: subprocess.Popen[bytes],
    log: Path,
    deadline: float,
    headers: dict[str, str] | None = None,
) -> None:
    stop_at = time.monotonic() + deadline
    while time.monotonic() < stop_at:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2, headers=headers).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready in {deadline} s; see {log}")


def pct(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def load(
    session: aiohttp.ClientSession,
    url: str,
    body: Json,
    headers: dict[str, str],
    total: int,
    concurrency: int,
) -> Json:
    payload = json.dumps(body).encode()
    headers = headers | {"Content-Type": "application/json"}
    times: list[float] = []
    errors = 0
    remaining = total

    async def worker() -> None:
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            began = time.perf_counter()
            async with session.post(url, data=payload, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1
            times.append(time.perf_counter() - began)

    # warm-up: connections, caches, JIT-free but import/first-call costs
    for _ in range(min(50, total)):
        async with session.post(url, data=payload, headers=headers) as resp:
            await resp.read()
    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - began
    times.sort()
    return {
        "requests": total,
        "errors": errors,
        "rps": round(total / wall, 1),
        "p50_ms": round(pct(times, 0.50) * 1000, 3),
        "p99_ms": round(pct(times, 0.99) * 1000, 3),
        "mean_ms": round(statistics.fmean(times) * 1000, 3),
    }


def litellm_config(path: Path, upstream: str) -> None:
    path.write_text(
        "model_list:\n"
        "  - model_name: bench-openai\n"
        "    litellm_params:\n"
        "      model: openai/bench-openai\n"
        f"      api_base: {upstream}/v1\n"
        "      api_key: sk-bench\n"
        "  - model_name: bench-ollama\n"
        "    litellm_params:\n"
        "      model: ollama_chat/bench-ollama\n"
        f"      api_base: {upstream}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  set_verbose: false\n"
    )


async def measure(args: argparse.Namespace, up: str, ours: str, litellm: str | None) -> Json:
    messages = [{"role": "user", "content": "Say hi"}]
    cells: list[tuple[str, str, str, Json, dict[str, str]]] = [
        (
            "ollama",
            "direct",
            f"{up}/api/chat",
            {"model": "bench-ollama", "messages": messages, "stream": False},
            {},
        ),
        (
            "ollama",
            "ours",
            f"{ours}/api/chat",
            {"model": "bench-ollama", "messages": messages, "stream": False},
            {"Authorization": f"Bearer {TOKEN}"},
        ),
        (
            "openai",
            "direct",
            f"{up}/v1/chat/completions",
            {"model": "bench-openai", "messages": messages},
            {},
        ),
        (
            "openai",
            "ours",
            f"{ours}/v1/chat/completions",
            {"model": "bench-openai", "messages": messages},
            {"Authorization": f"Bearer {TOKEN}"},
        ),
    ]
    if litellm:
        cells.append(
            (
                "openai",
                "litellm",
                f"{litellm}/v1/chat/completions",
                {"model": "bench-openai", "messages": messages},
                {"Authorization": "Bearer sk-bench-master"},
            )
        )
    results: Json = {}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        for concurrency in (1, 10):
            for proto, target, url, body, headers in cells:
                total = args.requests if target != "litellm" else max(100, args.requests // 10)
                progress.print(f"{proto:6} {target:7} c={concurrency:<3} {total} requests")
                results[f"{proto}/{target}/c{concurrency}"] = await load(
                    session, url, body, headers, total, concurrency
                )
    return results


def report(results: Json, have_litellm: bool) -> Json:
    table = Table(title="gateway overhead (ms; added = target - direct at the same concurrency)")
    for col in (
        "protocol",
        "target",
        "conc",
        "req/s",
        "p50",
        "p99",
        "added p50",
        "added p99",
        "errors",
    ):
        table.add_column(col, justify="right")
    summary: Json = {}
    for key, cell in results.items():
        proto, target, conc = key.split("/")
        direct = results[f"{proto}/direct/{conc}"]
        added50 = round(cell["p50_ms"] - direct["p50_ms"], 3)
        added99 = round(cell["p99_ms"] - direct["p99_ms"], 3)
        cell["added_p50_ms"], cell["added_p99_ms"] = added50, added99
        table.add_row(
            proto,
            target,
            conc[1:],
            f"{cell['rps']:.0f}",
            f"{cell['p50_ms']:.2f}",
            f"{cell['p99_ms']:.2f}",
            "" if target == "direct" else f"{added50:.2f}",
            "" if target == "direct" else f"{added99:.2f}",
            str(cell["errors"]),
        )
    Console().print(table)
    for proto in ("ollama", "openai"):
        summary[f"{proto}_added_p50_ms_c1"] = results[f"{proto}/ours/c1"]["added_p50_ms"]
        summary[f"{proto}_added_p99_ms_c1"] = results[f"{proto}/ours/c1"]["added_p99_ms"]
        summary[f"{proto}_rps_c10"] = results[f"{proto}/ours/c10"]["rps"]
    if have_litellm:
        ratio = results["openai/ours/c10"]["rps"] / results["openai/litellm/c10"]["rps"]
        summary["rps_ratio_vs_litellm_c10"] = round(ratio, 2)
        summary["litellm_added_p50_ms_c1"] = results["openai/litellm/c1"]["added_p50_ms"]
        summary["litellm_rps_c10"] = results["openai/litellm/c10"]["rps"]
        Console().print(
            f"ours / LiteLLM requests/s at concurrency 10 (openai protocol): {ratio:.1f}x"
        )
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--requests", type=int, default=2000, help="requests per cell (LiteLLM: a tenth, >= 100)"
    )
    parser.add_argument("--quick", action="store_true", help="400 requests per cell")
    parser.add_argument("--no-litellm", action="store_true", help="skip the LiteLLM peer")
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.upstream:
        run_upstream(args.upstream)
        return
    if args.quick:
        args.requests = 400
    root = shared_tmpdir("agentcom-gwbench-")
    layout = embedded.PostgresLayout(root / "pg", root / "run", free_port(), database="bench")
    try:
        with embedded.postgres_running(layout, root / "postgres.log"):
            asyncio.run(embedded.wait_for_postgres(layout, deadline=60))
            asyncio.run(embedded.create_database(layout))
            broker = start_nats(root / "js")
            try:
                figures = run(args, root, layout, broker.url)
            finally:
                broker.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(figures))  # noqa: T201 - the benchmark's machine-readable line


def run(
    args: argparse.Namespace, root: Path, layout: embedded.PostgresLayout, nats_url: str
) -> Json:
    up_port, offset = free_port(), free_port() - 8103
    up = f"http://127.0.0.1:{up_port}"
    ours = f"http://127.0.0.1:{8103 + offset}"
    db_url = f"postgresql://{layout.user}@/bench?host={layout.socket_dir}&port={layout.port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCOM_")} | {
        "AGENTCOM_NATS_URL": nats_url,
        "AGENTCOM_DATABASE_URL": db_url,
        "AGENTCOM_PORT_OFFSET": str(offset),
        "AGENTCOM_ADMIN_TOKEN": TOKEN,
        "AGENTCOM_LOG_LEVEL": "WARNING",
        "AGENTCOM_HOME": str(root / "home"),
    }
    with contextlib.ExitStack() as stack:
        upstream = stack.enter_context(
            process([sys.executable, __file__, "--upstream", str(up_port)], root / "upstream.log")
        )
        wait_http(f"{up}/api/tags", upstream, root / "upstream.log", 30)
        registry = stack.enter_context(
            process([sys.executable, "-m", "agentcom_llm_registry"], root / "registry.log", env)
        )
        wait_http(f"{ours}/readyz", registry, root / "registry.log", 60)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        for endpoint in (
            {"id": "ollama-up", "provider": "ollama", "base_url": up, "classes": ["local"]},
            {"id": "openai-up", "provider": "openai", "base_url": f"{up}/v1", "classes": ["local"]},
        ):
            httpx.post(
                f"{ours}/api/llm/endpoints", json=endpoint, headers=auth, timeout=10
            ).raise_for_status()
            httpx.post(
                f"{ours}/api/llm/endpoints/{endpoint['id']}/check", headers=auth, timeout=10
            ).raise_for_status()
        litellm = None
        if not args.no_litellm and shutil.which("uvx"):
            port = free_port()
            cfg = root / "litellm.yaml"
            litellm_config(cfg, up)
            lenv = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("AGENTCOM_", "VIRTUAL_ENV"))
            } | {"LITELLM_MASTER_KEY": "sk-bench-master", "LITELLM_LOG": "ERROR"}
            proc = stack.enter_context(
                process(
                    [
                        "uvx",
                        "--from",
                        "litellm[proxy]",
                        "litellm",
                        "--config",
                        str(cfg),
                        "--port",
                        str(port),
                        "--num_workers",
                        "1",
                    ],
                    root / "litellm.log",
                    lenv,
                )
            )
            progress.print("starting LiteLLM (first run installs it with uv; may take a minute)")
            wait_http(f"http://127.0.0.1:{port}/health/liveliness", proc, root / "litellm.log", 300)
            litellm = f"http://127.0.0.1:{port}"
        results = asyncio.run(measure(args, up, ours, litellm))
    summary = report(results, litellm is not None)
    return {
        "bench": "gateway",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "requests_per_cell": args.requests,
        "summary": summary,
        "cells": results,
    }


if __name__ == "__main__":
    main()
