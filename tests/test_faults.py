"""The whole pipeline under kill -9 (issue 14): real processes for the queue, the scheduler,
three sidecars, NATS and PostgreSQL (this test's own, durable, so that it may be killed), and
a few hundred short shell tasks flowing. Each of them is killed in turn with SIGKILL while work
flows and started again, the way a supervisor would.

Then every task has ended in exactly one terminal state, none is lost, none completed twice,
and every run is in the history: each task's command appends the directory it ran in (the
agent's own workspaces) to one file, and a task has no more runs on an agent than its history
has `working` transitions (an `accepted` that applied, the hub's `start`) by that agent. A task
handed to a second agent while the first still ran it would show a run the history lacks.
"""

import asyncio
import contextlib
import shutil
import signal
import sqlite3
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from agentcom_common import auth, embedded
from agentcom_common.testing import (
    NatsServer,
    ServiceProcess,
    eventually,
    free_port,
    shared_tmpdir,
    start_nats,
)
from task_ledger import (
    TERMINAL,
    Json,
    all_tasks,
    answered,
    check_every_history,
    start_agents,
    stuck_report,
)

TASKS = 150
AGENTS = ("f1", "f2", "f3")

SCHEDULER_ENV = {
    "AGENTCOM_SCHEDULER_HEARTBEAT_INTERVAL": "500ms",
    "AGENTCOM_SCHEDULER_MISSED_HEARTBEATS": "10",
    "AGENTCOM_SCHEDULER_SWEEP_INTERVAL": "200ms",
    "AGENTCOM_SCHEDULER_ACCEPT_TIMEOUT": "10s",
    "AGENTCOM_NATS_RECONNECT_WAIT": "100ms",
}


class Postgres:
    """A durable PostgreSQL of this test's own (fsync on: a kill -9 must lose no commit)."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.layout = embedded.PostgresLayout(
            data_dir=root / "data", socket_dir=root / "run", port=free_port()
        )
        self.log = root / "postgres.log"
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        await asyncio.to_thread(self._spawn)
        try:
            await embedded.wait_for_postgres(self.layout, deadline=60)
        except embedded.EmbeddedError as exc:
            raise AssertionError(self.log.read_text(errors="replace")[-3000:]) from exc

    def _spawn(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                embedded.prepare_postgres(self.layout),
                stdout=out,
                stderr=subprocess.STDOUT,
                user=embedded.os_user(),
                preexec_fn=lambda: embedded.die_with_parent(signal.SIGINT),
            )

    def kill(self) -> None:
        """SIGKILL to the postmaster and every backend at once: no shutdown, no checkpoint.
        (Each backend is a session of its own, so a process-group kill misses them.)"""
        assert self.process is not None
        everyone = [psutil.Process(self.process.pid)]
        with contextlib.suppress(psutil.Error):
            everyone += everyone[0].children(recursive=True)
        for proc in everyone:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        psutil.wait_procs(everyone, timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Stack:
    postgres: Postgres
    nats: NatsServer
    queue: ServiceProcess
    scheduler: ServiceProcess
    api: httpx.AsyncClient  # admin token; the queue's routes
    agents: httpx.AsyncClient  # admin token; the scheduler's routes

    def restart_nats(self) -> None:
        port = int(self.nats.address.rsplit(":", 1)[1])
        self.nats = start_nats(self.nats.store, port, self.nats.auth)


@pytest.fixture
def nats_own(tmp_path: Path) -> Iterator[list[NatsServer]]:
    """This test's NATS (killed and started again: the list holds the one running)."""
    servers = [start_nats(tmp_path / "nats")]
    try:
        yield servers
    finally:
        servers[-1].stop()


@pytest.fixture
async def stack(tmp_path: Path, nats_own: list[NatsServer]) -> AsyncIterator[Stack]:
    postgres = Postgres(shared_tmpdir("agentcom-faults-pg-"))  # the postgres user must reach it
    await postgres.start()
    await embedded.create_database(postgres.layout)
    db_url = postgres.layout.url
    engine = create_async_engine(db_url.replace("postgresql://", "postgresql+asyncpg://"))
    await auth.migrate(engine)
    token = (await auth.issue(engine, auth.Role.ADMIN, "faults admin")).token
    await engine.dispose()
    nats = nats_own[0]
    env = {"AGENTCOM_SCHEDULER_NATS_ISSUER_SEED": nats.auth.issuer_seed} | SCHEDULER_ENV
    queue = ServiceProcess("queue", nats.url, db_url, tmp_path / "queue.log")
    scheduler = ServiceProcess("scheduler", nats.url, db_url, tmp_path / "scheduler.log", env)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        await asyncio.to_thread(queue.start)
        await asyncio.to_thread(scheduler.start)
        async with (
            httpx.AsyncClient(base_url=queue.url, headers=headers, timeout=10) as api,
            httpx.AsyncClient(base_url=scheduler.url, headers=headers, timeout=10) as agents,
        ):
            made = Stack(postgres, nats, queue, scheduler, api, agents)
            yield made
            nats_own.append(made.nats)
    finally:
        queue.stop()
        scheduler.stop()
        postgres.stop()
        shutil.rmtree(postgres.root, ignore_errors=True)


class Faults:
    """kill -9 of each part in turn, then started again as a supervisor would."""

    def __init__(self, stack: Stack, sidecars: Any, configs: dict[str, Path]) -> None:
        self.stack, self.sidecars, self.configs = stack, sidecars, configs

    async def queue(self) -> None:
        self.stack.queue.kill()
        await asyncio.to_thread(self.stack.queue.start)

    async def scheduler(self) -> None:
        self.stack.scheduler.kill()
        await asyncio.to_thread(self.stack.scheduler.start)

    async def sidecar(self) -> None:
        self.sidecars.kill("f2")
        self.sidecars.start("f2", self.configs["f2"])

    async def nats(self) -> None:
        self.stack.nats.process.kill()
        self.stack.nats.process.wait()
        self.stack.restart_nats()

    async def postgres(self) -> None:
        self.stack.postgres.kill()
        await self.stack.postgres.start()

    def in_turn(self) -> list[Callable[[], Awaitable[None]]]:
        return [self.queue, self.scheduler, self.sidecar, self.nats, self.postgres]


# a nats-py client whose server died leaves its old socket's StreamWriter unclosed when it
# reconnects (as in sidecar/tests/test_presence.py)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.timeout(900)  # five faults and their recoveries: minutes, not the default 120 s
async def test_kill_9_of_each_part_in_turn_loses_nothing_and_runs_nothing_twice(
    stack: Stack, sidecars: Any, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.log"
    faults = Faults(
        stack, sidecars, await start_agents(stack.agents, sidecars, stack.nats.address, AGENTS)
    )
    # a short command that leaves a trace of every run: where it ran (the agent's workspaces)
    command = ["sh", "-c", f'pwd >> "{runs}"; sleep 0.05']
    submitted: list[str] = []
    per_wave = TASKS // len(faults.in_turn())

    async def submit_wave() -> None:
        for _ in range(per_wave):
            body = {
                "description": f"fault {len(submitted)}",
                "metadata": {"command": command},
                "max_retries": 10,
            }
            made = await answered(lambda b=body: stack.api.post("/api/tasks", json=b))
            assert made.status_code == 201, made.text
            submitted.append(made.json()["id"])

    async def flowing(at_least: int) -> None:
        """Part of the latest wave has ended: work flows through every part again."""
        ended = [t for t in await all_tasks(stack.api) if t["state"] in TERMINAL]
        assert len(ended) >= at_least, (len(ended), at_least)

    for n, fault in enumerate(faults.in_turn()):
        await submit_wave()
        await eventually(lambda n=n: flowing(n * per_wave + 3), timeout=120)
        await fault()

    async def every_task_ended() -> list[Json]:
        tasks = {t["id"]: t for t in await all_tasks(stack.api)}
        assert set(submitted) <= set(tasks), "a submitted task is gone"
        waiting = [(i, tasks[i]["state"]) for i in submitted if tasks[i]["state"] not in TERMINAL]
        assert not waiting, (len(waiting), waiting[:5])
        return [tasks[i] for i in submitted]

    try:
        ended = await eventually(every_task_ended, timeout=300, pause=0.5)
    except AssertionError as exc:  # say where it is stuck: agents, and the stuck tasks' history
        raise AssertionError(
            await stuck_report(stack.api, stack.agents, AGENTS, submitted)
        ) from exc
    assert len(submitted) == TASKS
    await check_every_history(stack.api, ended, runs)
    done = sum(t["state"] == "completed" for t in ended)
    assert done >= TASKS - 5, Counter(t["state"] for t in ended)  # faults, not lost work


OUTAGE = 4.0  # seconds each server stays away: many relay passes, sweeps and heartbeats
GATE_LIMIT = 60  # seconds a gated task waits for its gate at most, so a failed test never hangs


@dataclass
class Stream:
    """Tasks submitted one after another until stopped, by a client that waits `Retry-After`
    and tries again on a 503: what every client of a degraded stack is asked to do."""

    api: httpx.AsyncClient
    command: list[str]
    submitted: list[str] = field(default_factory=list[str])
    refused: list[httpx.Response] = field(default_factory=list[httpx.Response])
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        while not self.stop.is_set():
            n = len(self.submitted)
            body = {
                "description": f"outage {n}",
                "metadata": {"command": self.command},
                "max_retries": 10,
                "client_key": f"outage-{n}",  # a retry after an unclear 503 is the same task
            }
            made = await self.api.post("/api/tasks", json=body)
            pause = 0.2  # a steady trickle, not a flood
            if made.status_code == 503:
                self.refused.append(made)
                pause = float(made.headers["Retry-After"])
            else:
                assert made.status_code in (200, 201), made.text
                self.submitted.append(made.json()["id"])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), pause)


async def degraded(stack: Stack, dependency: str) -> None:
    """Both services are up (liveness) and not ready, naming the one dependency away."""
    for client in (stack.api, stack.agents):
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert [c["name"] for c in ready.json()["checks"] if not c["ok"]] == [dependency]


async def recovered(stack: Stack) -> None:
    for client in (stack.api, stack.agents):
        assert (await answered(lambda c=client: c.get("/readyz"))).status_code == 200


def unsent_reports(sidecars: Any) -> int:
    """Reports the sidecars journaled that JetStream has not acked yet."""
    total = 0
    for journal in Path(sidecars.root).glob("*/state/journal.sqlite3"):
        with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as db:
            total += db.execute("SELECT count(*) FROM report WHERE sent_at IS NULL").fetchone()[0]
    return total


async def postgres_away(stack: Stack, stream: Stream) -> None:
    """Writes are refused with 503, Retry-After and a problem JSON; nothing answers 500."""
    await asyncio.to_thread(stack.postgres.stop)
    await eventually(lambda: degraded(stack, "postgres"), timeout=30)
    refused = await stack.api.post("/api/tasks", json={"description": "while Postgres is away"})
    assert refused.status_code == 503, refused.text
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"] == "db_unavailable"
    agent = await stack.agents.post("/api/agents", json={"name": "latecomer"})
    assert agent.status_code == 503, agent.text
    await asyncio.sleep(OUTAGE)  # the outage itself: how long Postgres stays away
    assert stream.refused, "the stream never met the outage"
    await stack.postgres.start()


def gated(runs: Path, gate: Path) -> list[str]:
    """A task that runs until the test opens its gate: in flight for as long as the test needs,
    however slowly a loaded machine starts the others (a fixed sleep raced them)."""
    polls = GATE_LIMIT * 20
    script = (
        f'pwd >> "{runs}"; i=0; '
        f'while [ ! -e "{gate}" ] && [ "$i" -lt {polls} ]; do sleep 0.05; i=$((i+1)); done'
    )
    return ["sh", "-c", script]


async def nats_away(
    stack: Stack, stream: Stream, sidecars: Any, long_tasks: list[str], gate: Path
) -> None:
    """Submitting still works (the outbox keeps the events); sidecars journal their reports."""

    async def running() -> None:
        for task_id in long_tasks:
            task = (await answered(lambda t=task_id: stack.api.get(f"/api/tasks/{t}"))).json()
            assert task["state"] == "working", task

    await eventually(running, timeout=60)
    stack.nats.process.kill()
    stack.nats.process.wait()
    await eventually(lambda: degraded(stack, "nats"), timeout=30)
    made = await stack.api.post("/api/tasks", json={"description": "while NATS is away"})
    assert made.status_code == 201, made.text
    stream.submitted.append(made.json()["id"])
    await asyncio.to_thread(gate.touch)  # the in-flight tasks end now, with no NATS to report to

    async def journaled() -> None:
        assert unsent_reports(sidecars) > 0

    await eventually(journaled, timeout=30)
    await asyncio.sleep(OUTAGE)  # the outage itself: how long NATS stays away
    await asyncio.to_thread(stack.restart_nats)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # as above
@pytest.mark.timeout(600)
async def test_postgres_then_nats_away_under_a_stream_of_tasks_degrade_and_lose_nothing(
    stack: Stack, sidecars: Any, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.log"
    await start_agents(stack.agents, sidecars, stack.nats.address, AGENTS)
    stream = Stream(stack.api, ["sh", "-c", f'pwd >> "{runs}"; sleep 0.1'])
    flowing = asyncio.create_task(stream.run())

    async def ended(at_least: int) -> None:
        assert not flowing.done()
        done = [t for t in await all_tasks(stack.api) if t["state"] in TERMINAL]
        assert len(done) >= at_least, (len(done), at_least)

    await eventually(lambda: ended(5), timeout=120)
    await postgres_away(stack, stream)
    await eventually(lambda: recovered(stack), timeout=60)
    await eventually(lambda: ended(len(stream.submitted) // 2 + 5), timeout=120)

    gate = tmp_path / "gate"
    long_tasks: list[str] = []
    for n in range(len(AGENTS)):
        body = {
            "description": f"long {n}",
            "metadata": {"command": gated(runs, gate)},
        }
        long_tasks.append((await stack.api.post("/api/tasks", json=body)).json()["id"])
    await nats_away(stack, stream, sidecars, long_tasks, gate)
    await eventually(lambda: recovered(stack), timeout=60)
    stream.stop.set()
    await flowing
    submitted = stream.submitted + long_tasks

    async def every_task_ended() -> list[Json]:
        tasks = {t["id"]: t for t in await all_tasks(stack.api)}
        waiting = [(i, tasks[i]["state"]) for i in submitted if tasks[i]["state"] not in TERMINAL]
        assert not waiting, (len(waiting), waiting[:5])
        assert unsent_reports(sidecars) == 0  # every journaled report reached the hub
        return [tasks[i] for i in submitted]

    try:
        done = await eventually(every_task_ended, timeout=300, pause=0.5)
    except AssertionError as exc:
        raise AssertionError(
            await stuck_report(stack.api, stack.agents, AGENTS, submitted)
        ) from exc
    await check_every_history(stack.api, done, runs)
    assert all(r.json()["error"] == "db_unavailable" for r in stream.refused)
