"""Agents' outcomes through the scheduler (today) against straight to the queue (issue 16).

    uv run python bench/outcome_bench.py            # 200 agents, 100 tasks/s for 30 s, each way
    uv run python bench/outcome_bench.py --quick    # 50 agents, 50 tasks/s for 8 s
    uv run python bench/outcome_bench.py --variants direct,via_scheduler   # the other order

Each variant runs on fresh servers (`scheduler_bench.servers()`: embedded Postgres, durable,
and nats-server with auth on) with the queue and the scheduler as their own processes, N agents
registered over HTTP and played from this process as `scheduler_bench.Sim` plays them (hello,
a heartbeat every 5 s, `accepted` then `completed` for every assignment), and tasks submitted
over `agentcom.rpc.queue.submit` on a fixed schedule (open loop). The agents' outcomes go:

- **via_scheduler** (today): published to the agent's JetStream report subject, exactly as
  scheduler_bench does (`completed` right after `accepted`, not waiting for the `start`); the
  scheduler's report consumer hands them to the queue (`report_batch`) and frees the agent.
- **direct**: `accepted`, then on its reply `completed`, each a `ReportTask` with the
  assignment's generation over `agentcom.rpc.queue.report` (`micro.call`, the real contracts);
  `bench/outcome_follower.py`, its own process, follows the queue's `task.*` events and moves
  the agent (see its docstring for what it does and does not do).

Timed from the moment the agent sends its `completed` (before the publish or the request):
- go-ahead: the queue's transition is committed and the agent can know it: via_scheduler the
  `task.completed` event seen here (the queue relays it after its commit), direct the RPC
  reply. Also for `accepted`: via_scheduler the `start` in the agent's inbox, direct the reply.
- agent free: the agent's `agent.idle` event (reason `completed <task>`) seen here; both ways
  the scheduler's outbox relay publishes it. (Its next assignment would measure the task
  arrival rate more than the freeing: most agents are idle at this load.)

Checks: every task completed, no task assigned to two agents at once, no outcome refused.
CPU per task of each process (queue, scheduler, follower, nats-server, Postgres with its
children, this client) from /proc between the start of the load and the end of the drain.
Prints a table, then one JSON object as the very last line of stdout.
"""

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import psutil
import scheduler_bench
from nats.aio.client import Client
from nats.aio.msg import Msg
from rich.console import Console
from rich.table import Table

from agentcom_common import embedded, micro, subjects
from agentcom_common.contracts.task import ReportTask, TaskView
from agentcom_common.errors import AgentcomError
from agentcom_common.testing import ChildProcess, ServiceProcess

Json = dict[str, Any]
VARIANTS = ("via_scheduler", "direct")
FOLLOWER = Path(__file__).with_name("outcome_follower.py")
FOLLOWER_DURABLE = "bench-outcome-follower"  # outcome_follower.DURABLE
progress = Console(stderr=True)


@dataclass(slots=True)
class Times:
    """What the agents' side saw of each outcome (perf_counter seconds, one clock)."""

    accept_sent: dict[str, float] = field(default_factory=dict[str, float])  # task -> sent
    completed_sent: dict[str, float] = field(default_factory=dict[str, float])
    accept_go_ms: dict[str, float] = field(default_factory=dict[str, float])
    go_ahead_ms: dict[str, float] = field(default_factory=dict[str, float])
    free_ms: dict[str, float] = field(default_factory=dict[str, float])
    refused: int = 0


class Agents(scheduler_bench.Sim):
    """scheduler_bench's agents; `direct` sends their outcomes to the queue's RPC instead."""

    def __init__(
        self, conns: list[Client], names: list[str], fleet: scheduler_bench.Fleet, direct: bool
    ) -> None:
        super().__init__(conns, names, fleet)
        self.direct = direct
        self.times = Times()

    async def on_inbox(self, msg: Msg) -> None:
        body = json.loads(msg.data)
        if body.get("kind") == "start":  # the scheduler's go-ahead for an `accepted`
            task_id = body["task_id"]
            sent = self.times.accept_sent.get(task_id)
            if sent is not None:
                self.times.accept_go_ms.setdefault(task_id, (time.perf_counter() - sent) * 1000)
            return
        await super().on_inbox(msg)

    async def answer(self, agent: str, assign: Json) -> None:
        """As scheduler_bench's agent (without its silent victims) or, `direct`, to the queue;
        each outcome timed from just before it is sent."""
        if self.direct:
            await self._direct(agent, assign)
            return
        task_id: str = assign["task"]["id"]
        ids = {"task_id": task_id, "generation": assign["generation"]}
        self.times.accept_sent.setdefault(task_id, time.perf_counter())
        await self.report(agent, ids | {"kind": "accepted"})
        self.fleet.completed_sent += 1
        self.fleet.holder.pop(task_id, None)
        self.times.completed_sent.setdefault(task_id, time.perf_counter())
        await self.report(agent, ids | {"kind": "completed", "result": {"ok": True}})

    async def _direct(self, agent: str, assign: Json) -> None:
        nc = self.by_agent[agent]
        task_id: str = assign["task"]["id"]
        times = self.times

        def report(outcome: Any, **more: Any) -> ReportTask:
            return ReportTask(
                task_id=task_id,
                agent_id=agent,
                generation=assign["generation"],
                outcome=outcome,
                **more,
            )

        try:
            sent = times.accept_sent.setdefault(task_id, time.perf_counter())
            await micro.call(nc, "queue", "report", report("accepted"), TaskView, timeout=60)
            times.accept_go_ms.setdefault(task_id, (time.perf_counter() - sent) * 1000)
            self.fleet.completed_sent += 1
            self.fleet.holder.pop(task_id, None)
            sent = times.completed_sent.setdefault(task_id, time.perf_counter())
            done = report("completed", result={"ok": True})
            await micro.call(nc, "queue", "report", done, TaskView, timeout=60)
            times.go_ahead_ms.setdefault(task_id, (time.perf_counter() - sent) * 1000)
        except AgentcomError as exc:  # stale, refused: counted, the check says it must be 0
            times.refused += 1
            progress.log(f"refused {task_id}: {exc.code}")


async def watch(nc: Client, agents: Agents) -> None:
    """The go-ahead of today's path (the queue's `task.completed`) and the agent's freeing
    (its `agent.idle`, reason `completed <task>`), both ways."""
    times = agents.times

    async def on_completed(msg: Msg) -> None:
        now = time.perf_counter()
        task_id = json.loads(msg.data)["task_id"]
        sent = times.completed_sent.get(task_id)
        if sent is not None and not agents.direct:
            times.go_ahead_ms.setdefault(task_id, (now - sent) * 1000)

    async def on_idle(msg: Msg) -> None:
        now = time.perf_counter()
        kind, _, task_id = str(json.loads(msg.data)["reason"]).partition(" ")
        sent = times.completed_sent.get(task_id)
        if kind == "completed" and sent is not None:
            times.free_ms.setdefault(task_id, (now - sent) * 1000)

    await nc.subscribe(subjects.TASK_COMPLETED, cb=on_completed)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
    await nc.subscribe(subjects.AGENT_IDLE, cb=on_idle)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed


def _postmaster_pid(layout: embedded.PostgresLayout) -> int:
    """The postmaster's pid from its data directory (scheduler_bench's servers() keeps the
    process to itself)."""
    return int((layout.data_dir / "postmaster.pid").read_text().split()[0])


class Cpu:
    """CPU seconds (user + system) so far of each party, as scheduler_bench reads them.

    Postgres is the postmaster and its live children (backends, WAL writer, checkpointer...);
    the services keep their pools' backends open, so few take their share away by exiting."""

    def __init__(self, pids: dict[str, int | None], postmaster: int) -> None:
        self.pids = pids
        self.postmaster = psutil.Process(postmaster)

    def snapshot(self) -> dict[str, float]:
        own = {name: _cpu_of(pid) for name, pid in self.pids.items()}
        postgres = _cpu_of(self.postmaster.pid)
        for child in self.postmaster.children():
            with contextlib.suppress(psutil.Error):  # it exited meanwhile
                times = child.cpu_times()
                postgres += times.user + times.system
        return own | {"postgres": postgres, "client": time.process_time()}


def _cpu_of(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:  # not running (the follower in today's variant)
        return 0.0
    return times.user + times.system


async def until_following(nats_url: str, follower: ChildProcess, deadline_s: float = 60) -> None:
    """Until the follower's durable consumer exists: from then on no event it follows is lost
    (the consumer starts at the events stored after it was made)."""
    nc = await nats.connect(nats_url)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
    js = nc.jetstream()  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
    stop_at = time.perf_counter() + deadline_s
    try:
        while True:
            assert follower.process is not None
            if follower.process.poll() is not None:
                raise RuntimeError(f"the follower exited; see {follower.log}")
            with contextlib.suppress(Exception):  # not made yet
                await js.consumer_info(subjects.EVENTS_STREAM, FOLLOWER_DURABLE)
                return
            if time.perf_counter() > stop_at:
                raise RuntimeError(f"the follower did not subscribe in {deadline_s:.0f} s")
            await asyncio.sleep(0.1)
    finally:
        await nc.close()


async def run(args: argparse.Namespace, variant: str) -> Json:
    direct = variant == "direct"
    token = "bench-admin-" + os.urandom(16).hex()
    with scheduler_bench.servers() as (layout, broker, root):
        await embedded.wait_for_postgres(layout, deadline=60)
        await embedded.create_database(layout)
        env = scheduler_bench.service_env(token, broker.auth.issuer_seed)
        queue = ServiceProcess("queue", broker.url, layout.url, root / "queue.log", env)
        scheduler = ServiceProcess("scheduler", broker.url, layout.url, root / "scheduler.log", env)
        follower = ChildProcess(root / "follower.log")
        try:
            queue.start()
            scheduler.start()  # its migrations ran: the follower may read its schema
            if direct:
                base = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCOM_")}
                urls = {"AGENTCOM_NATS_URL": broker.url, "AGENTCOM_DATABASE_URL": layout.url}
                follower.spawn([sys.executable, str(FOLLOWER)], base | urls)
                await until_following(broker.url, follower)
            pids = {
                "queue": queue.process.pid if queue.process else None,
                "scheduler": scheduler.process.pid if scheduler.process else None,
                "follower": follower.process.pid if follower.process else None,
                "nats": broker.process.pid,
            }
            cpu = Cpu(pids, _postmaster_pid(layout))
            result = await measure(args, broker.url, scheduler.url, token, direct, cpu.snapshot)
        finally:
            follower.stop()
            scheduler.stop()
            queue.stop()
        if args.logs is not None:
            args.logs.mkdir(parents=True, exist_ok=True)
            for log in (queue.log, scheduler.log, follower.log):
                if log.exists():
                    (args.logs / f"{variant}-{log.name}").write_bytes(log.read_bytes())
        return {"variant": variant} | result


def _p(values: list[float], q: float) -> float:
    return round(scheduler_bench.percentile(sorted(values), q), 2)


async def measure(
    args: argparse.Namespace,
    nats_url: str,
    scheduler: str,
    token: str,
    direct: bool,
    cpu: Callable[[], dict[str, float]],
) -> Json:
    progress.log(f"{'direct' if direct else 'via scheduler'}: registering {args.agents} agents")
    names = await scheduler_bench.register(scheduler, token, args.agents)
    conns = [await nats.connect(nats_url) for _ in range(scheduler_bench.CONNECTIONS)]  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
    fleet = scheduler_bench.Fleet()
    stop = asyncio.Event()
    try:
        await scheduler_bench.watch_events(conns[0], fleet)
        agents = Agents(conns, names, fleet, direct)
        await watch(conns[-1], agents)
        await agents.start()
        beats = asyncio.create_task(agents.beats(stop))
        await scheduler_bench.until_online(scheduler, token)
        progress.log(f"load: {args.rate}/s for {args.seconds} s")
        before = cpu()
        submitted, achieved = await scheduler_bench.offer(conns[0], fleet, args.rate, args.seconds)
        offered_at = time.perf_counter()
        times = agents.times
        while time.perf_counter() - offered_at < args.drain:  # every task done and freed
            if len(fleet.completed_events) >= submitted and len(times.free_ms) >= submitted:
                break
            await asyncio.sleep(0.1)
        drained = time.perf_counter() - offered_at
        after = cpu()
        stop.set()
        await beats
        await asyncio.gather(*agents.running)
    finally:
        for conn in conns:
            await conn.close()
    per_task = {
        f"cpu_ms_per_task_{party}": round(1000 * (after[party] - before[party]) / submitted, 3)
        for party in before
    }
    services = sum(after[p] - before[p] for p in before if p != "client")
    times = agents.times
    accept_go, go_ahead, free = (
        list(times.accept_go_ms.values()),
        list(times.go_ahead_ms.values()),
        list(times.free_ms.values()),
    )
    assign = fleet.latencies_ms
    return {
        "agents": args.agents,
        "rate_offered_per_s": args.rate,
        "rate_achieved_per_s": round(achieved, 1),
        "tasks": submitted,
        "completed": len(fleet.completed_events),
        "not_completed_at_end": submitted - len(fleet.completed_events),
        "assigned_twice_at_once": fleet.double,
        "outcomes_refused": times.refused,
        "drain_s": round(drained, 2),
        "accept_go_ahead_p50_ms": _p(accept_go, 0.5),
        "accept_go_ahead_p99_ms": _p(accept_go, 0.99),
        "go_ahead_n": len(go_ahead),
        "go_ahead_p50_ms": _p(go_ahead, 0.5),
        "go_ahead_p99_ms": _p(go_ahead, 0.99),
        "agent_free_n": len(free),
        "agent_free_p50_ms": _p(free, 0.5),
        "agent_free_p99_ms": _p(free, 0.99),
        "assign_p50_ms": _p(assign, 0.5),
        "assign_p99_ms": _p(assign, 0.99),
        **per_task,
        "cpu_ms_per_task_services": round(1000 * services / submitted, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Outcomes via the scheduler or to the queue.")
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--drain", type=float, default=60.0, help="seconds to wait at the end")
    parser.add_argument("--quick", action="store_true", help="50 agents, 50/s for 8 s")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="which to run, in this order (comma-separated: via_scheduler, direct)",
    )
    parser.add_argument(
        "--logs", type=Path, default=None, help="copy the processes' logs into this directory"
    )
    args = parser.parse_args()
    if args.quick:
        args.agents, args.rate, args.seconds = 50, 50.0, 8.0
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if bad := [v for v in variants if v not in VARIANTS]:
        parser.error(f"--variants takes {', '.join(VARIANTS)}, not {bad[0]!r}")
    results = [asyncio.run(run(args, v)) for v in variants]  # each on fresh servers
    by_name = {r["variant"]: r for r in results}
    table = Table(title="outcome bench", title_justify="left")
    table.add_column("measure")
    for one in results:
        table.add_column(one["variant"], justify="right")
    both = "via_scheduler" in by_name and "direct" in by_name
    if both:
        table.add_column("direct / via", justify="right")
    ratios: Json = {}
    for key in results[0]:
        if key == "variant":
            continue
        row = [str(one.get(key)) for one in results]
        if both:
            via, direct = by_name["via_scheduler"].get(key), by_name["direct"].get(key)
            if isinstance(via, int | float) and isinstance(direct, int | float) and via:
                ratios[key] = round(direct / via, 3)
            row.append(str(ratios.get(key, "")))
        table.add_row(key, *row)
    Console().print(table)
    out: Json = {
        "variants": results,
        "ratio_direct_over_via": ratios,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
