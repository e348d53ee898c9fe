"""Scheduler: submit -> assignment delivered at the agent, under many agents and steady load.

    uv run python bench/scheduler_bench.py                 # 1,000 agents, 200 tasks/s, 60 s
    uv run python bench/scheduler_bench.py --quick         # 100 agents, 50 tasks/s, 10 s
    uv run python bench/scheduler_bench.py --replicas 2    # one, then two of queue and scheduler

Starts its own embedded Postgres (durable) and nats-server with auth on, runs the queue and the
scheduler as their own processes (`python -m agentcom_queue|agentcom_scheduler`, as under
`agentcom up`), registers N agents over HTTP, and plays them from this process: light
simulated agents sharing a few NATS connections (hub login), each saying hello, sending a
heartbeat every 5 s, and answering an assignment at once with `accepted` then `completed`.

1. Load: tasks are submitted over the queue's NATS API on a fixed schedule (open loop) for S
   seconds. Latency = submit sent -> `assign` received on the agent's inbox subject (the send
   time travels in the task's metadata; one clock, this process).
2. Silence: V agents accept their next task and then go quiet (no heartbeat, no outcome).
   Detection = the agent's last heartbeat -> its task handed back (the queue's `failed` event).
3. Checks: every task ends `completed` within `--drain` s after the offer ends
   (`not_completed_at_end` counts the rest: lost or still queued) and no task was held by two
   agents at once (an `assign` for a task whose previous holder had not finished or been requeued).

With `--replicas 2` the same load runs twice in one invocation, each on fresh servers: first
against one queue and one scheduler process, then against two of each (tasks submitted over
NATS are spread among the queues by NATS; agents' reports among the schedulers by their shared
durable consumer; HTTP registration goes to the first scheduler). Each configuration reports
its latencies, its checks, and `service_cpu_ms_per_task`: the user + system CPU time of all the
service processes from the start of the load to the end of the drain, per task. On two cores
wall-clock scaling cannot show; CPU per task and correctness can.

Peer: none meaningful. The parts that compete (PgQueuer, Celery, Temporal task queues) have no
agents with presence, capabilities and fenced reassignment; the queue's own claim path is
measured against PgQueuer in `bench/queue_bench.py`. Prints a table, then one JSON object as
the very last line of stdout.
"""

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
import psutil
from nats.aio.client import Client
from nats.aio.msg import Msg
from rich.console import Console
from rich.table import Table

from agentcom_common import embedded, subjects
from agentcom_common.testing import ServiceProcess, free_port, shared_tmpdir, start_nats
from agentcom_scheduler.presence.core import CONSUMER

Json = dict[str, Any]
HEARTBEAT_S = 5.0
MISSED = 3
CONNECTIONS = 8  # NATS connections the simulated agents share
progress = Console(stderr=True)


@dataclass(slots=True)
class Fleet:
    """What the simulated agents saw."""

    latencies_ms: list[float] = field(default_factory=list[float])
    holder: dict[str, str] = field(default_factory=dict[str, str])  # task -> agent holding it
    seen: set[str] = field(default_factory=set[str])
    double: int = 0
    assigns: int = 0
    completed_sent: int = 0
    victims_wanted: int = 0
    victims: dict[str, float] = field(default_factory=dict[str, float])  # task -> last beat
    silent: set[str] = field(default_factory=set[str])
    last_beat: dict[str, float] = field(default_factory=dict[str, float])
    detection_s: list[float] = field(default_factory=list[float])
    completed_events: set[str] = field(default_factory=set[str])
    t0: dict[str, float] = field(default_factory=dict[str, float])  # task -> submit sent
    reached: dict[str, dict[str, float]] = field(default_factory=dict[str, dict[str, float]])

    def stage(self, name: str, task_id: str, now: float) -> None:
        """Note when the task first reached stage `name` (a trace: where the latency goes)."""
        self.reached.setdefault(name, {}).setdefault(task_id, now)

    def stage_ms(self) -> dict[str, list[float]]:
        """Per stage, the sorted times from each task's submit to that stage (ms)."""
        return {
            name: sorted((at - self.t0[t]) * 1000 for t, at in seen.items() if t in self.t0)
            for name, seen in self.reached.items()
        }


@contextlib.contextmanager
def servers() -> Generator[tuple[embedded.PostgresLayout, Any, Path]]:
    root = shared_tmpdir("agentcom-sbench-")
    layout = embedded.PostgresLayout(root / "pg", root / "run", free_port(), database="bench")
    try:
        with embedded.postgres_running(layout, root / "postgres.log"):
            broker = start_nats(root / "js")
            try:
                yield layout, broker, root
            finally:
                broker.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def percentile(ordered: list[float], q: float) -> float:
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else float("nan")


async def register(url: str, token: str, count: int) -> list[str]:
    headers = {"Authorization": f"Bearer {token}"}
    names = [f"sim-{i:04d}" for i in range(count)]
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        sem = asyncio.Semaphore(8)

        async def one(name: str) -> None:
            async with sem:
                made = await client.post("/api/agents", json={"name": name})
                made.raise_for_status()

        await asyncio.gather(*(one(n) for n in names))
    return names


async def until_online(url: str, token: str, deadline_s: float = 120.0) -> float:
    """Seconds until the scheduler shows no registered agent offline: every hello applied.

    The load starts after that, so assignment latency is not measured against a fleet still
    coming up (a fixed sleep was too short on a loaded machine and waited for nothing on an
    idle one)."""
    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        while True:
            listing = await client.get("/api/agents")
            listing.raise_for_status()
            if not [a for a in listing.json() if a["state"] == "offline"]:
                return time.perf_counter() - started
            if time.perf_counter() - started > deadline_s:
                raise RuntimeError(f"agents still offline after {deadline_s:.0f} s of hellos")
            await asyncio.sleep(0.25)


class Sim:
    """The simulated agents: each hears its own inbox and answers at once, like a sidecar."""

    def __init__(self, conns: list[Client], names: list[str], fleet: Fleet) -> None:
        self.names = names
        self.fleet = fleet
        self.by_agent = {name: conns[i % len(conns)] for i, name in enumerate(names)}
        self.running: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        for name, conn in self.by_agent.items():  # each agent hears its own inbox, once
            await conn.subscribe(f"agentcom.agent.{name}.inbox", cb=self.on_inbox)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
        for name in self.names:
            await self.report(name, {"kind": "hello"})
            self.fleet.last_beat[name] = time.perf_counter()

    async def report(self, agent: str, body: Json) -> None:
        js = self.by_agent[agent].jetstream()  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
        await js.publish(
            f"agentcom.agent.{agent}.report", json.dumps(body | {"agent_id": agent}).encode()
        )

    async def answer(self, agent: str, assign: Json) -> None:
        fleet = self.fleet
        task = assign["task"]
        ids = {"task_id": task["id"], "generation": assign["generation"]}
        if fleet.victims_wanted > 0 and agent not in fleet.silent:
            fleet.victims_wanted -= 1
            fleet.silent.add(agent)  # from now on: no heartbeat, no outcome
            fleet.victims[task["id"]] = fleet.last_beat.get(agent, time.perf_counter())
            await self.report(agent, ids | {"kind": "accepted"})
            return
        await self.report(agent, ids | {"kind": "accepted"})
        fleet.completed_sent += 1
        fleet.holder.pop(task["id"], None)
        await self.report(agent, ids | {"kind": "completed", "result": {"ok": True}})

    async def on_inbox(self, msg: Msg) -> None:
        now = time.perf_counter()
        fleet = self.fleet
        agent = msg.subject.split(".")[2]
        body = json.loads(msg.data)
        if body.get("kind") != "assign" or agent in fleet.silent:
            return
        task: Json = body["task"]
        metadata: Json = task.get("metadata") or {}
        sent = metadata.get("t0")
        if sent is not None and task["id"] not in fleet.seen:  # a reassignment is not timed
            fleet.latencies_ms.append((now - float(sent)) * 1000)
            fleet.t0.setdefault(task["id"], float(sent))
            fleet.stage("assign_received", task["id"], now)
        fleet.seen.add(task["id"])
        fleet.assigns += 1
        previous = fleet.holder.get(task["id"])
        if previous is not None and previous not in fleet.silent:
            fleet.double += 1  # a quiet agent's task is meant to move on
        fleet.holder[task["id"]] = agent
        answering = asyncio.create_task(self.answer(agent, body))
        self.running.add(answering)
        answering.add_done_callback(self.running.discard)

    async def beats(self, stop: asyncio.Event) -> None:
        """Every agent's heartbeat once per interval, spread evenly."""
        step = HEARTBEAT_S / len(self.names)
        started = time.perf_counter()
        i = 0
        while not stop.is_set():
            agent = self.names[i % len(self.names)]
            if agent not in self.fleet.silent:
                self.fleet.last_beat[agent] = time.perf_counter()
                body = {"kind": "heartbeat", "agent_id": agent, "cpu_percent": 5.0}
                await self.by_agent[agent].publish(
                    f"agentcom.agent.{agent}.report", json.dumps(body).encode()
                )
            i += 1
            delay = started + i * step - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)


async def watch_events(nc: Client, fleet: Fleet) -> None:
    async def on_event(msg: Msg) -> None:
        now = time.perf_counter()
        body = json.loads(msg.data)
        task_id = body.get("task_id")
        if msg.subject.endswith(".submitted"):
            fleet.stage("event_submitted", task_id, now)
        elif msg.subject.endswith(".assigned"):
            fleet.stage("event_assigned", task_id, now)
        if msg.subject.endswith(".completed"):
            fleet.completed_events.add(task_id)
        elif msg.subject.endswith(".failed") and task_id in fleet.victims:
            fleet.detection_s.append(time.perf_counter() - fleet.victims.pop(task_id))
            fleet.holder.pop(task_id, None)

    await nc.subscribe("agentcom.evt.task.*", cb=on_event)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed


async def submit(nc: Client, fleet: Fleet, i: int) -> None:
    """One task over the queue's NATS API; notes when its submit was sent and answered."""
    sent = time.perf_counter()
    body = {"description": f"bench {i}", "metadata": {"t0": sent}}
    reply = await nc.request("agentcom.rpc.queue.submit", json.dumps(body).encode(), timeout=60)
    task_id = json.loads(reply.data)["id"]
    fleet.t0.setdefault(task_id, sent)
    fleet.stage("submit_answered", task_id, time.perf_counter())


async def offer(nc: Client, fleet: Fleet, rate: float, seconds: float) -> tuple[int, float]:
    """Submit tasks on a fixed schedule (open loop); returns (count, achieved rate)."""
    total = int(rate * seconds)
    pending: list[asyncio.Task[None]] = []
    start = time.perf_counter()
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append(asyncio.create_task(submit(nc, fleet, i)))
    issued = time.perf_counter() - start
    await asyncio.gather(*pending)
    return total, total / issued if issued else rate


@dataclass
class Backlog:
    """The scheduler's REPORTS consumer, sampled each second: the most reports waiting for it
    (stored, not yet delivered, plus delivered, not yet acked) and how many waited at the end.
    Heartbeats and task outcomes share that consumer, and the presence sweep holds off judging
    silence while reports wait, so a growing backlog is where a large fleet's figures go."""

    most: int = 0
    last: int = 0

    async def sample(self, nc: Client, stop: asyncio.Event) -> None:
        js = nc.jetstream()  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
        while not stop.is_set():
            with contextlib.suppress(Exception):  # not made yet, or NATS busy: next second
                info = await js.consumer_info(subjects.REPORTS_STREAM, CONSUMER)
                self.last = (info.num_pending or 0) + (info.num_ack_pending or 0)
                self.most = max(self.most, self.last)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await stop.wait()


def service_env(token: str, issuer_seed: str) -> dict[str, str]:
    """The queue's and scheduler's settings in these benches: the admin token, the auth
    callout's issuer, this bench's heartbeats, rate limits out of the way, quiet logs."""
    return {
        "AGENTCOM_ADMIN_TOKEN": token,
        "AGENTCOM_SCHEDULER_NATS_ISSUER_SEED": issuer_seed,
        "AGENTCOM_SCHEDULER_HEARTBEAT_INTERVAL": f"{HEARTBEAT_S}s",
        "AGENTCOM_SCHEDULER_MISSED_HEARTBEATS": str(MISSED),
        "AGENTCOM_SCHEDULER_RATE_LIGHT": "100000",
        "AGENTCOM_SCHEDULER_RATE_NORMAL": "100000",
        "AGENTCOM_SCHEDULER_RATE_HEAVY": "100000",
        "AGENTCOM_LOG_LEVEL": "WARNING",
    }


async def run(args: argparse.Namespace, replicas: int = 1) -> Json:
    token = "bench-admin-" + os.urandom(16).hex()
    with servers() as (layout, broker, root):
        await embedded.wait_for_postgres(layout, deadline=60)
        await embedded.create_database(layout)
        env = service_env(token, broker.auth.issuer_seed) | dict(
            setting.split("=", 1) for setting in args.set
        )
        traced = env | {"AGENTCOM_LOG_LEVEL": "DEBUG"} if args.trace else env
        procs = [
            ServiceProcess(name, broker.url, layout.url, root / f"{name}-{k}.log", own)
            for name, own in (("queue", env), ("scheduler", traced))
            for k in range(1, replicas + 1)
        ]

        def cpu_s() -> float:
            """User + system CPU seconds the service processes have used so far."""
            total = 0.0
            for proc in procs:
                assert proc.process is not None
                times = psutil.Process(proc.process.pid).cpu_times()
                total += times.user + times.system
            return total

        try:
            for proc in procs:
                proc.start()
            scheduler = next(p for p in procs if p.module == "agentcom_scheduler")
            result = await measure(args, broker.url, scheduler.url, token, cpu_s)
        finally:
            for proc in procs:
                proc.stop()
        if args.logs is not None:
            args.logs.mkdir(parents=True, exist_ok=True)
            for proc in procs:
                shutil.copy(proc.log, args.logs / proc.log.name)
        traces = [matching_trace(root / f"scheduler-{k}.log") for k in range(1, replicas + 1)]
        return {"replicas": replicas} | result | (traces[0] if args.trace else {})


def matching_trace(log: Path) -> Json:
    """p50/p99 of the scheduler's `matching.pass` / `matching.offer` debug lines (--trace),
    of how long an agent was silent when the sweep took it offline, and how often the sweep
    put off judging presence because reports were waiting."""
    fields: dict[str, list[float]] = {}
    for line in log.read_text().splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            event = str(record.get("event", ""))
            if event == "sweep.presence_deferred":
                fields.setdefault("sweep_deferred", []).append(1.0)
            if event == "agent.silent" and record.get("silent_s") is not None:
                fields.setdefault("offline_after_s", []).append(float(record["silent_s"]))
            if event in ("matching.pass", "matching.offer", "matching.read"):
                for key, value in record.items():
                    if key.endswith("_ms") or key in ("ms", "tasks"):
                        name = f"{event.split('.')[1]}_{key}"
                        fields.setdefault(name, []).append(float(value))
    out: Json = {}
    for name, values in sorted(fields.items()):
        ordered = sorted(values)
        out[f"trace_{name}_n"] = len(ordered)
        out[f"trace_{name}_p50"] = round(percentile(ordered, 0.5), 2)
        out[f"trace_{name}_p99"] = round(percentile(ordered, 0.99), 2)
    return out


async def measure(
    args: argparse.Namespace,
    nats_url: str,
    scheduler: str,
    token: str,
    cpu_s: Callable[[], float] = lambda: 0.0,
) -> Json:
    progress.log(f"registering {args.agents:,} agents")
    t = time.perf_counter()
    names = await register(scheduler, token, args.agents)
    registered_s = time.perf_counter() - t
    conns = [await nats.connect(nats_url) for _ in range(CONNECTIONS)]  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
    fleet = Fleet()
    backlog = Backlog()
    stop = asyncio.Event()
    try:
        await watch_events(conns[0], fleet)
        sim = Sim(conns, names, fleet)
        await sim.start()
        loops = [
            asyncio.create_task(sim.beats(stop)),
            asyncio.create_task(backlog.sample(conns[-1], stop)),
        ]
        hellos_s = await until_online(scheduler, token)
        progress.log(f"load: {args.rate}/s for {args.seconds} s")
        cpu_before = cpu_s()
        submitted, achieved = await offer(conns[0], fleet, args.rate, args.seconds)
        progress.log("silence: the next agents to get a task go quiet")
        fleet.victims_wanted = args.victims
        extra, _ = await offer(conns[0], fleet, max(1.0, args.victims / 2), 2.0)
        offered_at = time.perf_counter()
        deadline = time.perf_counter() + max(HEARTBEAT_S * MISSED + 30, args.drain)
        while time.perf_counter() < deadline:
            done = len(fleet.completed_events) >= submitted + extra
            if done and not fleet.victims and len(fleet.detection_s) >= args.victims:
                break
            await asyncio.sleep(0.2)
        drained = time.perf_counter() - offered_at
        cpu_used = cpu_s() - cpu_before
        stop.set()
        for loop in loops:
            loop.cancel()
    finally:
        for conn in conns:
            await conn.close()
    lat = sorted(fleet.latencies_ms)
    trace = {
        f"{name}_p{int(q * 100)}_ms": round(percentile(ms, q), 2)
        for name, ms in fleet.stage_ms().items()
        for q in (0.5, 0.99)
    }
    det = sorted(fleet.detection_s)
    total = submitted + extra
    return {
        "agents": args.agents,
        "rate_offered_per_s": args.rate,
        "rate_achieved_per_s": round(achieved, 1),
        "seconds": args.seconds,
        "tasks": total,
        "register_s": round(registered_s, 2),
        "hellos_applied_s": round(hellos_s, 2),
        "assign_p50_ms": round(percentile(lat, 0.50), 2),
        "assign_p90_ms": round(percentile(lat, 0.90), 2),
        "assign_p99_ms": round(percentile(lat, 0.99), 2),
        "assign_max_ms": round(lat[-1], 2) if lat else None,
        **trace,
        "silence_victims": len(det),
        "silence_to_requeue_p50_s": round(percentile(det, 0.5), 2),
        "silence_to_requeue_max_s": round(det[-1], 2) if det else None,
        "silence_limit_s": HEARTBEAT_S * MISSED,
        "completed": len(fleet.completed_events),
        "not_completed_at_end": total - len(fleet.completed_events),
        "drain_s": round(drained, 1),
        "assigned_twice_at_once": fleet.double,
        "reports_waiting_max": backlog.most,
        "reports_waiting_at_end": backlog.last,
        "service_cpu_s": round(cpu_used, 2),
        "service_cpu_ms_per_task": round(cpu_used * 1000 / total, 2) if total else None,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Scheduler: submit -> assignment delivered.")
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--victims", type=int, default=10)
    parser.add_argument(
        "--drain", type=float, default=300.0, help="seconds to wait for the backlog to finish"
    )
    parser.add_argument("--quick", action="store_true", help="100 agents, 50/s for 10 s")
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        choices=(1, 2),
        help="2: run the load against one, then two processes of queue and scheduler",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="AGENTCOM_NAME=VALUE",
        help="a setting for both services (repeatable), e.g. AGENTCOM_OUTBOX_LINGER=1ms",
    )
    parser.add_argument(
        "--logs", type=Path, default=None, help="copy the services' logs into this directory"
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="scheduler at DEBUG: summarise its per-pass matching timings (costs some CPU)",
    )
    args = parser.parse_args()
    if args.quick:
        args.agents, args.rate, args.seconds, args.victims = 100, 50.0, 10.0, 3
    if bad := [x for x in args.set if not x.startswith("AGENTCOM_") or "=" not in x]:
        parser.error(f"--set takes AGENTCOM_NAME=VALUE, not {bad[0]!r}")
    if args.replicas == 1:
        result = asyncio.run(run(args))
        results = [result]
    else:  # the same load against one and two replicas, one after the other
        results = [asyncio.run(run(args, replicas)) for replicas in (1, 2)]
        result = {"configurations": results}
    table = Table(title="scheduler bench", title_justify="left")
    table.add_column("measure")
    for one in results:
        table.add_column(f"{one['replicas']} of each", justify="right")
    for key in results[0]:
        table.add_row(key, *(str(one.get(key)) for one in results))
    Console().print(table)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
