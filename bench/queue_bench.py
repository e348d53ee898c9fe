"""Queue throughput and claim latency, with PgQueuer on the same Postgres for a ratio.

    uv run python bench/queue_bench.py [--tasks 20000] [--workers 8] [--quick]

Ours: the full cycle through the queue's NATS API (submit -> claim -> accepted -> completed),
the queue running as its own process. PgQueuer: enqueue -> dequeue (batch 100) -> ack, on a
separate database of the same embedded Postgres. Prints a table, then one JSON line.
"""

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import time
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import nats
from nats.aio.client import Client
from pgqueuer.queries import EntrypointExecutionParameter, Queries
from pgqueuer.types import QueueEntrypoint, QueueManagerId
from rich.console import Console
from rich.table import Table

from agentcom_common import embedded
from agentcom_common.testing import ServiceProcess, free_port, shared_tmpdir, start_nats

Json = dict[str, Any]


async def rpc(nc: Client, op: str, body: Json) -> Json:
    reply = await nc.request(f"agentcom.rpc.queue.{op}", json.dumps(body).encode(), timeout=30)
    if reply.headers and "Nats-Service-Error-Code" in reply.headers:
        raise RuntimeError(f"{op}: {reply.headers['Nats-Service-Error-Code']}")
    return json.loads(reply.data)


async def submit_all(nc: Client, count: int, concurrency: int = 64) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await rpc(nc, "submit", {"description": f"bench task {i}"})

    await asyncio.gather(*(one(i) for i in range(count)))


async def drain(nc: Client, workers: int) -> int:
    async def work(agent: str) -> int:
        done = 0
        while (task := (await rpc(nc, "claim", {"agent_id": agent}))["task"]) is not None:
            ids = {"task_id": task["id"], "agent_id": agent, "generation": task["generation"]}
            await rpc(nc, "report", ids | {"outcome": "accepted"})
            await rpc(nc, "report", ids | {"outcome": "completed"})
            done += 1
        return done

    return sum(await asyncio.gather(*(work(f"w{i}") for i in range(workers))))


async def bench_ours(nc: Client, tasks: int, workers: int) -> Json:
    started = time.perf_counter()
    await submit_all(nc, tasks)
    submitted = time.perf_counter()
    done = await drain(nc, workers)
    ended = time.perf_counter()
    assert done == tasks, f"drained {done} of {tasks}"
    return {
        "ours_tasks_per_s": tasks / (ended - started),
        "ours_submit_per_s": tasks / (submitted - started),
        "ours_claim_complete_per_s": tasks / (ended - submitted),
    }


async def bench_latency(nc: Client, rate: int, seconds: float) -> Json:
    """Offer `rate` claims/s on a fixed schedule (not waiting for replies); time each."""
    total = int(rate * seconds)
    await submit_all(nc, total)
    latencies: list[float] = []

    async def timed_claim(i: int) -> None:
        t0 = time.perf_counter()
        await rpc(nc, "claim", {"agent_id": f"l{i % 50}"})
        latencies.append((time.perf_counter() - t0) * 1000)

    start = time.perf_counter()
    pending: list[asyncio.Task[None]] = []
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append(asyncio.create_task(timed_claim(i)))
    await asyncio.gather(*pending)
    latencies.sort()
    return {
        "claim_rate_offered": rate,
        "claim_p50_ms": statistics.median(latencies),
        "claim_p99_ms": latencies[int(len(latencies) * 0.99) - 1],
    }


async def bench_pgqueuer(dsn: Json, jobs: int, workers: int) -> Json:
    connect: Any = asyncpg.create_pool  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # asyncpg: no stubs
    pool: Any = await connect(**dsn, min_size=workers, max_size=workers + 2)
    try:
        queries = Queries.from_asyncpg_pool(pool)
        await queries.install()
        started = time.perf_counter()
        for start in range(0, jobs, 1000):
            size = min(1000, jobs - start)
            await queries.enqueue(["bench"] * size, [b"{}"] * size, [0] * size)
        enqueued = time.perf_counter()

        async def work() -> int:
            done = 0
            manager = QueueManagerId(uuid.uuid4())
            while batch := await queries.dequeue(
                batch_size=100,
                entrypoints={
                    QueueEntrypoint("bench"): EntrypointExecutionParameter(concurrency_limit=0)
                },
                queue_manager_id=manager,
                global_concurrency_limit=None,
                heartbeat_timeout=timedelta(seconds=30),
            ):
                await queries.log_jobs([(job, "successful", None) for job in batch])
                done += len(batch)
            return done

        done = sum(await asyncio.gather(*(work() for _ in range(workers))))
        ended = time.perf_counter()
    finally:
        await pool.close()
    assert done == jobs, f"pgqueuer drained {done} of {jobs}"
    return {
        "pgqueuer_jobs_per_s": jobs / (ended - started),
        "pgqueuer_enqueue_per_s": jobs / (enqueued - started),
        "pgqueuer_dequeue_ack_per_s": jobs / (ended - enqueued),
    }


async def run(args: argparse.Namespace) -> Json:
    root = shared_tmpdir("agentcom-bench-")
    layout = embedded.PostgresLayout(root / "pg", root / "run", free_port(), database="bench")
    postgres = subprocess.Popen(  # noqa: ASYNC220 - started once, before any measuring
        embedded.prepare_postgres(layout),
        stdout=(root / "postgres.log").open("wb"),
        stderr=subprocess.STDOUT,
        user=embedded.os_user(),
        preexec_fn=lambda: embedded.die_with_parent(signal.SIGINT),
    )
    broker = start_nats(root / "js")
    queue: ServiceProcess | None = None
    try:
        await embedded.wait_for_postgres(layout, deadline=60)
        await embedded.create_database(layout)
        peer = embedded.PostgresLayout(layout.data_dir, layout.socket_dir, layout.port, "peer")
        await embedded.create_database(peer)
        env = {"AGENTCOM_QUEUE_RETRY_BACKOFF": "0", "AGENTCOM_LOG_LEVEL": "WARNING"}
        queue = ServiceProcess("queue", broker.url, layout.url, root / "queue.log", env)
        await asyncio.to_thread(queue.start)
        nc = await nats.connect(broker.url)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
        try:
            figures: Json = {"bench": "queue", "tasks": args.tasks, "workers": args.workers}
            figures |= await bench_ours(nc, args.tasks, args.workers)
            figures |= await bench_latency(nc, args.rate, args.latency_seconds)
        finally:
            await nc.close()
        dsn = {
            "host": str(layout.socket_dir),
            "port": layout.port,
            "user": layout.user,
            "database": "peer",
        }
        figures |= await bench_pgqueuer(dsn, args.tasks, args.workers)
    finally:
        if queue is not None:
            queue.stop()
        broker.stop()
        postgres.send_signal(signal.SIGINT)
        postgres.wait(timeout=30)
    figures["ratio"] = figures["ours_tasks_per_s"] / figures["pgqueuer_jobs_per_s"]
    return figures


def report(figures: Json) -> None:
    table = Table(title=f"queue: {figures['tasks']} tasks, {figures['workers']} workers")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:,.2f}")
    Console().print(table)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))  # noqa: T201 - the JSON line is the output


def main() -> None:
    parser = argparse.ArgumentParser(description="Queue throughput vs PgQueuer.")
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rate", type=int, default=500, help="claims/s offered for latency")
    parser.add_argument("--latency-seconds", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="2,000 tasks, 2 s of latency")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.latency_seconds = 2_000, 2.0
    report(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
