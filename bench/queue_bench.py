"""Queue throughput and claim latency, with PgQueuer on the same Postgres for a ratio.

    uv run python bench/queue_bench.py [--tasks 20000] [--workers 8] [--latency-seconds 5]
    uv run python bench/queue_bench.py --quick          # 2,000 tasks, 2 s of latency
    uv run python bench/queue_bench.py --single         # the one-task-per-RPC cycle too

Starts its own embedded Postgres (durable settings: `prepare_postgres(fast=False)`) and
nats-server the way the test plugin does, and runs the queue service as its own process
(`python -m agentcom_queue`, as a deployment does); this process is only the client. Then:

1. Ours: the full cycle through the queue's NATS API with the batch RPCs. Submit every task
   (`submit_batch`, 1,000 a request, like PgQueuer's enqueue batch), then W workers loop
   `claim_batch` (up to 100, like PgQueuer's dequeue batch) -> `report_batch` completed
   until the queue is empty (`--accept`: also the 4-transition cycle with `report_batch`
   accepted before completed). The outbox relay's catch-up afterwards
   is timed too. With `--single`, the same cycle one task per RPC (`submit`, `claim`,
   `report`) is measured as well.
2. Claim latency: pre-submit, then offer single `claim`s at a fixed rate (one every 2 ms at
   500/s) from one client without waiting for replies, timing each request.
3. PgQueuer: its schema in a second database of the same Postgres; enqueue in batches of
   1,000, then W workers dequeue (batch 100) and ack (`log_jobs`).

Prints a table, then one JSON object as the very last line of stdout.
"""

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import nats
from nats.aio.client import Client
from pgqueuer.queries import EntrypointExecutionParameter, Queries
from pgqueuer.types import QueueEntrypoint, QueueManagerId
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from agentcom_common import embedded, micro
from agentcom_common.contracts.task import (
    Claimed,
    ClaimedTasks,
    ClaimTask,
    ClaimTasks,
    Reported,
    ReportedTasks,
    ReportTask,
    ReportTasks,
    SubmitTask,
    SubmitTasks,
    SubmittedTasks,
    TaskView,
)
from agentcom_common.testing import ServiceProcess, free_port, shared_tmpdir, start_nats
from agentcom_queue.app import SPEC

Json = dict[str, Any]

SUBMIT_CONCURRENCY = 64  # in-flight single submits; a micro endpoint admits 64 at a time
SUBMIT_BATCH = 1_000  # tasks per submit_batch (PgQueuer's enqueue batch)
CLAIM_BATCH = 100  # tasks per claim_batch (PgQueuer's dequeue batch)
OUTBOX_BATCH = 1_000  # AGENTCOM_OUTBOX_BATCH of the queue process
RPC_TIMEOUT = 30.0  # seconds per request
ENQUEUE_BATCH = 1_000  # PgQueuer enqueue batch
DEQUEUE_BATCH = 100  # PgQueuer dequeue batch
OUTBOX_CATCHUP_LIMIT = 900.0  # seconds we wait for the relay before giving up

progress = Console(stderr=True)


@dataclass(frozen=True, slots=True)
class Servers:
    layout: embedded.PostgresLayout
    nats_url: str
    root: Path
    postgres_pid: int
    nats_pid: int


# ------------------------------------------------------------------------------------------
# servers


@contextlib.contextmanager
def servers() -> Generator[Servers]:
    """Embedded Postgres (durable) and nats-server on loopback; both stopped on any exit."""
    root = shared_tmpdir("agentcom-bench-")
    layout = embedded.PostgresLayout(root / "pg", root / "run", free_port(), database="bench")
    try:
        with embedded.postgres_running(layout, root / "postgres.log") as postgres:
            broker = start_nats(root / "js")
            try:
                yield Servers(layout, broker.url, root, postgres.pid, broker.process.pid)
            finally:
                broker.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) `pid` has used so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def cpu_snapshot(srv: Servers, queue_pid: int | None) -> dict[str, float]:
    """CPU seconds so far of each party: this client, the queue, nats-server, all of Postgres.

    Postgres counts the postmaster and its live children (backends, WAL writer, checkpointer…);
    a backend that exits between two snapshots takes its share with it, so the pools in this
    bench keep theirs open while measuring.
    """
    postgres = [srv.postgres_pid, *_children(srv.postgres_pid)]
    return {
        "client": time.process_time(),
        "queue": _cpu_of(queue_pid) if queue_pid else 0.0,
        "nats": _cpu_of(srv.nats_pid),
        "postgres": sum(_cpu_of(pid) for pid in postgres),
    }


def cpu_per_task(
    before: dict[str, float], after: dict[str, float], tasks: int, prefix: str
) -> Json:
    """Milliseconds of CPU per task, per party, between two snapshots."""
    return {
        f"{prefix}_cpu_ms_per_task_{party}": 1000 * (after[party] - before[party]) / tasks
        for party in before
    }


async def pg_connect(layout: embedded.PostgresLayout, database: str) -> Any:
    """A raw asyncpg connection (asyncpg ships no stubs)."""
    connect: Any = asyncpg.connect  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # asyncpg: no stubs
    return await connect(
        host=str(layout.socket_dir), port=layout.port, user=layout.user, database=database
    )


async def prepare_databases(srv: Servers) -> embedded.PostgresLayout:
    """Wait for Postgres, create `bench` (ours) and `peer` (PgQueuer); returns the peer."""
    await embedded.wait_for_postgres(srv.layout, deadline=60)
    await embedded.create_database(srv.layout)
    layout = srv.layout
    peer = embedded.PostgresLayout(layout.data_dir, layout.socket_dir, layout.port, "peer")
    await embedded.create_database(peer)
    return peer


# ------------------------------------------------------------------------------------------
# ours: the queue's NATS API


M = TypeVar("M", bound=BaseModel)


async def rpc(nc: Client, op: str, body: BaseModel, reply: type[M]) -> M:
    """One queue RPC as the services ask it (`micro.call`: the reply validated into its model,
    so the figures include what a real caller pays); a refusal raises its AgentcomError."""
    return await micro.call(nc, "queue", op, body, reply, timeout=RPC_TIMEOUT)


async def submit_batches(nc: Client, count: int, prefix: str) -> None:
    """Submit `count` tasks, SUBMIT_BATCH per `submit_batch`, two requests in flight."""

    async def submitter(first: int) -> None:
        for start in range(first, count, 2 * SUBMIT_BATCH):
            size = min(SUBMIT_BATCH, count - start)
            tasks = [SubmitTask(description=f"{prefix} task {start + i}") for i in range(size)]
            reply = await rpc(nc, "submit_batch", SubmitTasks(tasks=tasks), SubmittedTasks)
            if len(reply.tasks) != size:
                raise RuntimeError(f"submit_batch returned {len(reply.tasks)} of {size}")

    await asyncio.gather(submitter(0), submitter(SUBMIT_BATCH))


async def drain_batches(nc: Client, workers: int, limit: int, accept: bool) -> int:
    """W workers: claim_batch -> report_batch completed (with `accept`: accepted, then
    completed), until a claim comes back empty."""

    async def reports(agent: str, tasks: list[TaskView], outcome: Reported) -> None:
        body = ReportTasks(
            reports=[
                ReportTask(task_id=t.id, agent_id=agent, generation=t.generation, outcome=outcome)
                for t in tasks
            ]
        )
        results = (await rpc(nc, "report_batch", body, ReportedTasks)).results
        if refused := [r for r in results if not r.ok]:
            raise RuntimeError(f"report_batch refused {len(refused)}: {refused[0]}")

    async def work(agent: str) -> int:
        done = 0
        for _ in range(limit):
            body = ClaimTasks(agent_id=agent, limit=CLAIM_BATCH)
            tasks = list((await rpc(nc, "claim_batch", body, ClaimedTasks)).tasks)
            if not tasks:
                break
            if accept:
                await reports(agent, tasks, "accepted")
            await reports(agent, tasks, "completed")
            done += len(tasks)
        return done

    return sum(await asyncio.gather(*(work(f"bench-w{i}") for i in range(workers))))


async def submit_all(nc: Client, count: int, prefix: str) -> None:
    """Submit `count` tasks one per `submit`, at most SUBMIT_CONCURRENCY in flight."""

    async def submitter(first: int) -> None:
        for i in range(first, count, SUBMIT_CONCURRENCY):
            await rpc(nc, "submit", SubmitTask(description=f"{prefix} task {i}"), TaskView)

    await asyncio.gather(*(submitter(k) for k in range(min(SUBMIT_CONCURRENCY, count))))


async def drain(nc: Client, workers: int, limit: int, accept: bool) -> int:
    """W workers: claim -> (accepted ->) completed until a claim comes back empty."""

    async def work(agent: str) -> int:
        done = 0
        for _ in range(limit):
            task = (await rpc(nc, "claim", ClaimTask(agent_id=agent), Claimed)).task
            if task is None:
                break
            done_report = ReportTask(
                task_id=task.id, agent_id=agent, generation=task.generation, outcome="completed"
            )
            if accept:
                accepted = done_report.model_copy(update={"outcome": "accepted"})
                await rpc(nc, "report", accepted, TaskView)
            await rpc(nc, "report", done_report, TaskView)
            done += 1
        return done

    return sum(await asyncio.gather(*(work(f"bench-w{i}") for i in range(workers))))


async def outbox_backlog(db: Any) -> int:
    return int(await db.fetchval(f"SELECT count(*) FROM {SPEC.schema}.outbox"))


async def outbox_catchup(db: Any) -> tuple[int, float]:
    """(rows waiting now, seconds until the relay has published them all)."""
    started = time.perf_counter()
    backlog = await outbox_backlog(db)
    remaining = backlog
    for _ in range(int(OUTBOX_CATCHUP_LIMIT / 0.1)):
        if remaining == 0:
            break
        await asyncio.sleep(0.1)
        remaining = await outbox_backlog(db)
    if remaining:
        raise RuntimeError(
            f"outbox relay still has {remaining} rows after {OUTBOX_CATCHUP_LIMIT} s"
        )
    return backlog, time.perf_counter() - started


async def bench_ours(
    nc: Client,
    db: Any,
    tasks: int,
    workers: int,
    cpu: Callable[[], dict[str, float]],
    *,
    batched: bool = True,
    accept: bool = False,
    prefix: str = "ours",
) -> Json:
    how = "batch RPCs" if batched else "one task per RPC"
    progress.log(f"{prefix}: submitting {tasks:,} tasks ({how})")
    cpu_before = cpu()
    started = time.perf_counter()
    await (submit_batches if batched else submit_all)(nc, tasks, prefix)
    submitted = time.perf_counter()
    steps = "claim -> accepted -> completed" if accept else "claim -> completed"
    progress.log(f"{prefix}: {workers} workers {steps}")
    done = await (drain_batches if batched else drain)(nc, workers, tasks + 1, accept)
    ended = time.perf_counter()
    if done != tasks:
        raise RuntimeError(f"drained {done} of {tasks}")
    progress.log(f"{prefix}: waiting for the outbox relay to publish every event")
    backlog, catchup = await outbox_catchup(db)
    cpu_used = cpu_per_task(cpu_before, cpu(), tasks, prefix)
    cycle = ended - started
    return cpu_used | {
        f"{prefix}_tasks_per_s": tasks / cycle,
        f"{prefix}_submit_per_s": tasks / (submitted - started),
        f"{prefix}_claim_complete_per_s": tasks / (ended - submitted),
        f"{prefix}_cycle_s": cycle,
        f"{prefix}_outbox_backlog_at_end": backlog,
        f"{prefix}_outbox_catchup_s": catchup,
        f"{prefix}_tasks_per_s_incl_events": tasks / (cycle + catchup),
    }


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def bench_latency(
    nc: Client,
    db: Any,
    rate: int,
    seconds: float,
    cpu: Callable[[], dict[str, float]],
    *,
    vacuum: bool = False,
) -> Json:
    """Offer `rate` claims/s on a fixed schedule from one client (open loop); time each."""
    total = max(1, int(rate * seconds))
    progress.log(f"latency: pre-submitting {total:,} tasks")
    await submit_batches(nc, total, "latency")
    await outbox_catchup(db)  # the relay must not compete with the measured claims
    if vacuum:  # shows what the dead entries of claimed tasks cost each claim (see README)
        await db.execute(f"VACUUM {SPEC.schema}.tasks")
    progress.log(f"latency: {total:,} claims at {rate}/s")
    latencies: list[float] = []
    empty = 0

    async def timed_claim(i: int) -> None:
        nonlocal empty
        t0 = time.perf_counter()
        reply = await rpc(nc, "claim", ClaimTask(agent_id=f"bench-l{i % 50}"), Claimed)
        latencies.append((time.perf_counter() - t0) * 1000)
        empty += reply.task is None

    pending: list[asyncio.Task[None]] = []
    cpu_before = cpu()
    start = time.perf_counter()
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append(asyncio.create_task(timed_claim(i)))
    issued = time.perf_counter() - start
    await asyncio.gather(*pending)
    await outbox_catchup(db)  # the claims' events are part of their cost
    cpu_used = cpu_per_task(cpu_before, cpu(), total, "claim")
    latencies.sort()
    return cpu_used | {
        "claim_rate_offered": rate,
        "claim_rate_achieved": total / issued if issued > 0 else float(rate),
        "claims": total,
        "claims_empty": empty,
        "claim_p50_ms": statistics.median(latencies),
        "claim_p90_ms": percentile(latencies, 0.90),
        "claim_p99_ms": percentile(latencies, 0.99),
        "claim_max_ms": latencies[-1],
    }


async def run_ours(srv: Servers, args: argparse.Namespace) -> Json:
    env = {
        "AGENTCOM_HOME": str(srv.root / "home"),
        "AGENTCOM_QUEUE_RETRY_BACKOFF": "0",
        "AGENTCOM_LOG_LEVEL": "WARNING",
        "AGENTCOM_OUTBOX_BATCH": str(OUTBOX_BATCH),
        "AGENTCOM_OUTBOX_INTERVAL": "1s",  # the default (ServiceProcess sets the tests' 50ms)
    }
    queue = ServiceProcess("queue", srv.nats_url, srv.layout.url, srv.root / "queue.log", env)
    db = await pg_connect(srv.layout, srv.layout.database)
    try:
        await asyncio.to_thread(queue.start)
        nc = await nats.connect(srv.nats_url)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
        try:
            pid = queue.process.pid if queue.process else None
            cpu = partial(cpu_snapshot, srv, pid)
            figures = await bench_ours(nc, db, args.tasks, args.workers, cpu)
            if args.accept:  # the 4-transition cycle: claim -> accepted -> completed
                figures |= await bench_ours(
                    nc, db, args.tasks, args.workers, cpu, accept=True, prefix="accept"
                )
            if args.single:
                single = min(args.tasks, args.single_tasks)
                figures["single_tasks"] = single
                figures |= await bench_ours(
                    nc,
                    db,
                    single,
                    args.workers,
                    cpu,
                    batched=False,
                    accept=args.accept,
                    prefix="single",
                )
            figures |= await bench_latency(
                nc, db, args.rate, args.latency_seconds, cpu, vacuum=args.vacuum
            )
            figures["vacuum_before_latency"] = args.vacuum
        finally:
            await nc.close()
    finally:
        await db.close()
        await asyncio.to_thread(queue.stop)
    return figures


async def commit_floor(peer: embedded.PostgresLayout, count: int = 300) -> Json:
    """Latency of the cheapest durable commit (a one-row INSERT) on this Postgres and disk.

    Every claim commits once, so no claim can be faster than this on the same machine.
    """
    db = await pg_connect(peer, peer.database)
    try:
        await db.execute("CREATE TABLE commit_floor (x int)")
        times: list[float] = []
        for _ in range(count):
            t0 = time.perf_counter()
            await db.execute("INSERT INTO commit_floor VALUES (1)")
            times.append((time.perf_counter() - t0) * 1000)
        await db.execute("DROP TABLE commit_floor")
    finally:
        await db.close()
    times.sort()
    return {
        "pg_commit_p50_ms": statistics.median(times),
        "pg_commit_p99_ms": percentile(times, 0.99),
    }


# ------------------------------------------------------------------------------------------
# PgQueuer


async def pgqueuer_drain(queries: Queries, workers: int, limit: int) -> int:
    entrypoints = {QueueEntrypoint("bench"): EntrypointExecutionParameter(concurrency_limit=0)}

    async def work() -> int:
        done = 0
        manager = QueueManagerId(uuid.uuid4())
        for _ in range(limit):
            batch = await queries.dequeue(
                batch_size=DEQUEUE_BATCH,
                entrypoints=entrypoints,
                queue_manager_id=manager,
                global_concurrency_limit=None,
                heartbeat_timeout=timedelta(seconds=30),
            )
            if not batch:
                break
            await queries.log_jobs([(job, "successful", None) for job in batch])
            done += len(batch)
        return done

    return sum(await asyncio.gather(*(work() for _ in range(workers))))


async def run_pgqueuer(
    peer: embedded.PostgresLayout, jobs: int, workers: int, cpu: Callable[[], dict[str, float]]
) -> Json:
    create_pool: Any = asyncpg.create_pool  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # asyncpg: no stubs
    pool: Any = await create_pool(
        host=str(peer.socket_dir),
        port=peer.port,
        user=peer.user,
        database=peer.database,
        min_size=workers,
        max_size=workers + 2,
    )
    try:
        queries = Queries.from_asyncpg_pool(pool)
        await queries.install()
        progress.log(f"pgqueuer: enqueueing {jobs:,} jobs in batches of {ENQUEUE_BATCH:,}")
        cpu_before = cpu()
        started = time.perf_counter()
        for first in range(0, jobs, ENQUEUE_BATCH):
            size = min(ENQUEUE_BATCH, jobs - first)
            await queries.enqueue(["bench"] * size, [b"{}"] * size, [0] * size)
        enqueued = time.perf_counter()
        progress.log(f"pgqueuer: {workers} workers dequeue (batch {DEQUEUE_BATCH}) + ack")
        done = await pgqueuer_drain(queries, workers, jobs + 1)
        ended = time.perf_counter()
        cpu_used = cpu_per_task(cpu_before, cpu(), jobs, "pgqueuer")
    finally:
        await pool.close()
    if done != jobs:
        raise RuntimeError(f"pgqueuer drained {done} of {jobs}")
    del cpu_used["pgqueuer_cpu_ms_per_task_queue"]  # PgQueuer is a library in the client
    return cpu_used | {
        "pgqueuer_jobs_per_s": jobs / (ended - started),
        "pgqueuer_enqueue_per_s": jobs / (enqueued - started),
        "pgqueuer_dequeue_ack_per_s": jobs / (ended - enqueued),
        "pgqueuer_cycle_s": ended - started,
    }


# ------------------------------------------------------------------------------------------
# the run


async def run(srv: Servers, args: argparse.Namespace) -> Json:
    peer = await prepare_databases(srv)
    figures: Json = {
        "bench": "queue",
        "tasks": args.tasks,
        "workers": args.workers,
        "latency_seconds": args.latency_seconds,
        "postgres_durable": True,
        "queue_in_process": False,
        "submit_batch": SUBMIT_BATCH,
        "claim_batch": CLAIM_BATCH,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "pgqueuer_version": version("pgqueuer"),
    }
    figures |= await commit_floor(peer)
    figures |= await run_ours(srv, args)  # the queue service stops before PgQueuer runs
    figures |= await run_pgqueuer(peer, args.tasks, args.workers, partial(cpu_snapshot, srv, None))
    figures["ratio"] = figures["ours_tasks_per_s"] / figures["pgqueuer_jobs_per_s"]
    if "accept_tasks_per_s" in figures:
        figures["ratio_accept"] = figures["accept_tasks_per_s"] / figures["pgqueuer_jobs_per_s"]
    return figures


ROWS: list[tuple[str, str, str | None, str]] = [
    ("full cycle", "ours_tasks_per_s", "pgqueuer_jobs_per_s", "/s"),
    ("submit / enqueue", "ours_submit_per_s", "pgqueuer_enqueue_per_s", "/s"),
    (
        "claim+report / dequeue+ack",
        "ours_claim_complete_per_s",
        "pgqueuer_dequeue_ack_per_s",
        "/s",
    ),
    ("full cycle incl. outbox catch-up", "ours_tasks_per_s_incl_events", None, "/s"),
    ("outbox rows left at cycle end", "ours_outbox_backlog_at_end", None, ""),
    ("outbox catch-up", "ours_outbox_catchup_s", None, " s"),
    ("single-task RPCs: full cycle", "single_tasks_per_s", None, "/s"),
    ("--accept: full cycle (4 transitions)", "accept_tasks_per_s", None, "/s"),
    ("--accept: claim+accepted+completed", "accept_claim_complete_per_s", None, "/s"),
    ("--accept: CPU per task: queue", "accept_cpu_ms_per_task_queue", None, " ms"),
    ("--accept: CPU per task: Postgres", "accept_cpu_ms_per_task_postgres", None, " ms"),
    ("claims/s offered / achieved", "claim_rate_offered", None, "/s"),
    ("claim p50", "claim_p50_ms", None, " ms"),
    ("claim p90", "claim_p90_ms", None, " ms"),
    ("claim p99", "claim_p99_ms", None, " ms"),
    ("claim max", "claim_max_ms", None, " ms"),
    ("CPU per claim: queue service", "claim_cpu_ms_per_task_queue", None, " ms"),
    ("CPU per claim: Postgres", "claim_cpu_ms_per_task_postgres", None, " ms"),
    (
        "CPU per task: client",
        "ours_cpu_ms_per_task_client",
        "pgqueuer_cpu_ms_per_task_client",
        " ms",
    ),
    ("CPU per task: queue service", "ours_cpu_ms_per_task_queue", None, " ms"),
    ("CPU per task: nats-server", "ours_cpu_ms_per_task_nats", None, " ms"),
    (
        "CPU per task: Postgres",
        "ours_cpu_ms_per_task_postgres",
        "pgqueuer_cpu_ms_per_task_postgres",
        " ms",
    ),
    ("durable one-row commit p50 (floor)", "pg_commit_p50_ms", None, " ms"),
    ("durable one-row commit p99 (floor)", "pg_commit_p99_ms", None, " ms"),
]


def _fmt(value: object, unit: str) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}{unit}" if value >= 10 else f"{value:,.2f}{unit}"
    return f"{value:,}{unit}" if isinstance(value, int) else "—"


def report(figures: Json) -> None:
    table = Table(
        title=f"queue bench: {figures['tasks']:,} tasks, {figures['workers']} workers, "
        f"durable Postgres, {figures['cpus']} CPUs"
    )
    table.add_column("measure")
    table.add_column("ours", justify="right")
    table.add_column("PgQueuer", justify="right")
    for label, ours, peer, unit in ROWS:
        mine = _fmt(figures.get(ours), unit)
        if ours == "claim_rate_offered":
            mine += f" / {_fmt(figures.get('claim_rate_achieved'), '/s')}"
        table.add_row(label, mine, _fmt(figures.get(peer), unit) if peer else "")
    table.add_row("ratio ours / PgQueuer (full cycle)", f"{figures['ratio']:.4f}", "")
    if "ratio_accept" in figures:
        table.add_row("ratio with --accept (4 transitions)", f"{figures['ratio_accept']:.4f}", "")
    Console().print(table)
    rounded = {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}
    sys.stdout.write(json.dumps(rounded) + "\n")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Queue throughput and claim latency vs PgQueuer.")
    parser.add_argument("--tasks", type=int, default=None, help="tasks (default 20,000)")
    parser.add_argument("--workers", type=int, default=8, help="concurrent workers (default 8)")
    parser.add_argument("--rate", type=int, default=500, help="claims/s offered (default 500)")
    parser.add_argument(
        "--latency-seconds", type=float, default=None, help="latency phase length (default 5)"
    )
    parser.add_argument("--quick", action="store_true", help="2,000 tasks, 2 s of latency")
    parser.add_argument(
        "--single", action="store_true", help="also time the one-task-per-RPC cycle"
    )
    parser.add_argument(
        "--vacuum", action="store_true", help="VACUUM queue.tasks before the latency phase"
    )
    parser.add_argument(
        "--accept",
        action="store_true",
        help="also time the 4-transition cycle (claim -> accepted -> completed)",
    )
    parser.add_argument(
        "--single-tasks", type=int, default=2_000, help="tasks of the --single cycle (2,000)"
    )
    args = parser.parse_args(argv)
    if args.tasks is None:
        args.tasks = 2_000 if args.quick else 20_000
    if args.latency_seconds is None:
        args.latency_seconds = 2.0 if args.quick else 5.0
    if args.tasks < 1 or args.workers < 1 or args.rate < 1 or args.latency_seconds <= 0:
        parser.error("--tasks, --workers, --rate and --latency-seconds must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    with servers() as srv:
        figures = asyncio.run(run(srv, args))
    report(figures)


if __name__ == "__main__":
    main()
