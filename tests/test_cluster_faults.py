"""Scale-out under kill -9 (issue 22): a 3-node NATS cluster with every stream on all three
(`AGENTCOM_NATS_STREAM_REPLICAS=3`), two real processes of every service (queue, scheduler,
llm-registry, hubfsm, dashboard) on one Postgres, and three real sidecars. While short shell
tasks flow, one replica of each service is killed in turn with SIGKILL (the hub's leading
brain for hubfsm), then the NATS node the sidecars connected to; nothing is started again: the
other replica and the other two nodes carry on.

Then every task has ended exactly once with every run in its history on the agent that ran it
(`task_ledger.check_history`: a task run by two agents, or twice by one within a generation,
shows a run the history lacks), no agent ran two tasks at once (each command holds a lock
directory in its agent's home while it runs and notes when it finds it taken), an agent's rate
limit set through one scheduler replica is one bucket for both (not one each) and is still set
after that replica's death, the surviving hubfsm replica's brain took the lead, and no alert
rule fired twice while the dashboard lost a replica.

What this test leaves to others: the brain's moves coming from the leader alone
(services/hubfsm/tests/test_brain_leader.py) and each alert pushed once from two dashboard
replicas (services/dashboard/tests/test_replicas.py).
"""

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.aio.msg import Msg
from sqlalchemy.ext.asyncio import create_async_engine

from agentcom_common import auth
from agentcom_common.testing import NatsServer, ServiceProcess, eventually, start_nats_cluster
from task_ledger import (
    TERMINAL,
    Json,
    all_tasks,
    answered,
    check_every_history,
    start_agents,
    stuck_report,
)

TASKS = 42
AGENTS = ("c1", "c2", "c3")
LIGHT = 12  # the probe agent's GET budget per minute, set through one scheduler replica

SCHEDULER_ENV = {
    "AGENTCOM_SCHEDULER_HEARTBEAT_INTERVAL": "500ms",
    "AGENTCOM_SCHEDULER_MISSED_HEARTBEATS": "10",
    "AGENTCOM_SCHEDULER_SWEEP_INTERVAL": "200ms",
    "AGENTCOM_SCHEDULER_ACCEPT_TIMEOUT": "10s",
}
OWN_ENV = {
    "scheduler": SCHEDULER_ENV,
    "hubfsm": {"AGENTCOM_HUB_TICK_INTERVAL": "100ms", "AGENTCOM_HUB_LEADER_INTERVAL": "300ms"},
    # an alert that fires twice in this test was judged twice (no cooldown ends in it)
    "dashboard": {"AGENTCOM_DASHBOARD_LEADER_INTERVAL": "300ms"}
    | {
        f"AGENTCOM_DASHBOARD_ALERT_{rule}_COOLDOWN": "1h"
        for rule in ("QUEUE_GROWING", "FAILURE_RATE", "STUCK", "ERROR_RATE")
    },
}


@dataclass
class Cluster:
    nodes: list[NatsServer]
    replicas: dict[str, list[ServiceProcess]]  # by service: its two processes
    token: str  # admin

    def client(self, service: str, k: int) -> httpx.AsyncClient:
        """An admin client of `service`'s replica `k` (0 or 1)."""
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.AsyncClient(
            base_url=self.replicas[service][k].url, headers=headers, timeout=10
        )


@pytest.fixture
async def cluster(tmp_path: Path, db_url: str) -> AsyncIterator[Cluster]:
    nodes = start_nats_cluster(tmp_path / "nats", size=3)
    engine = create_async_engine(db_url.replace("postgresql://", "postgresql+asyncpg://"))
    token = (await auth.issue(engine, auth.Role.ADMIN, "cluster faults admin")).token
    await engine.dispose()
    nats_url = ",".join(node.url for node in nodes)  # every node, as the ConfigMap names them
    common = {
        "AGENTCOM_NATS_STREAM_REPLICAS": "3",
        "AGENTCOM_ADMIN_TOKEN": token,
        "AGENTCOM_NATS_RECONNECT_WAIT": "100ms",
        "AGENTCOM_DB_POOL_SIZE": "3",  # ten processes on the tests' one Postgres
        "AGENTCOM_OUTBOX_INTERVAL": "200ms",  # ten relays polling Postgres: fewer passes
        "AGENTCOM_SCHEDULER_NATS_ISSUER_SEED": nodes[0].auth.issuer_seed,
    }
    replicas: dict[str, list[ServiceProcess]] = {}
    for k in (1, 2):

        def made(name: str, extra: dict[str, str] | None = None, k: int = k) -> ServiceProcess:
            env = common | OWN_ENV.get(name, {}) | {"AGENTCOM_HOME": str(tmp_path / f"home{k}")}
            log = tmp_path / f"{name}-{k}.log"
            process = ServiceProcess(name, nats_url, db_url, log, env | (extra or {}))
            replicas.setdefault(name, []).append(process)
            return process

        peers = {name: made(name) for name in ("queue", "scheduler", "llm-registry", "hubfsm")}
        made(
            "dashboard",
            {
                "AGENTCOM_DASHBOARD_QUEUE_URL": peers["queue"].url,
                "AGENTCOM_DASHBOARD_SCHEDULER_URL": peers["scheduler"].url,
                "AGENTCOM_DASHBOARD_LLM_URL": peers["llm-registry"].url,
                "AGENTCOM_DASHBOARD_HUB_URL": peers["hubfsm"].url,
            },
        )
    everyone = [p for pair in replicas.values() for p in pair]
    try:
        await asyncio.gather(*(asyncio.to_thread(p.start, 400) for p in everyone))
        yield Cluster(nodes, replicas, token)
    finally:
        for process in everyone:
            process.stop()
        for node in nodes:
            node.stop()


def command(runs: Path, overlaps: Path) -> list[str]:
    """A short run that notes where it ran, and whether its agent was running another: the
    lock is a directory in the agent's home (<home>/workspaces/scratch/<task>/../../..)."""
    script = (
        'here=$(pwd); lock="$here/../../../busy"; '
        f'mkdir "$lock" 2>/dev/null || echo "$here" >> "{overlaps}"; '
        "trap 'rmdir \"$lock\" 2>/dev/null; exit 143' TERM INT; "
        f'echo "$here" >> "{runs}"; sleep 0.2; rmdir "$lock"'
    )
    return ["sh", "-c", script]


async def one_bucket_for_both(cluster: Cluster) -> None:
    """The probe agent's GET budget, set through scheduler replica 1, drawn through both in
    turn: together they let through the budget (and what refilled meanwhile), not twice it."""
    async with cluster.client("scheduler", 0) as first, cluster.client("scheduler", 1) as second:
        made = (await first.post("/api/agents", json={"name": "probe"})).json()
        put = await first.put("/api/agents/probe/rate-limits", json={"light": LIGHT})
        assert put.status_code == 200, put.text
        assert put.json()["light"] == LIGHT
        shown = (await second.get("/api/agents/probe/rate-limits")).json()
        assert (shown["light"], shown["overridden"]) == (LIGHT, True)
        as_agent = {"Authorization": f"Bearer {made['token']}"}
        answers: list[tuple[int, int]] = []  # (replica, status)
        began = time.monotonic()
        for n in range(3 * LIGHT):
            replica = (first, second)[n % 2]
            reply = await replica.get("/api/agents/probe", headers=as_agent)
            answers.append((n % 2, reply.status_code))
        refilled = math.ceil((time.monotonic() - began) * LIGHT / 60)
    allowed = sum(status == 200 for _, status in answers)
    assert {status for _, status in answers} == {200, 429}, answers
    assert LIGHT <= allowed <= LIGHT + refilled, (allowed, refilled, answers)
    assert {replica for replica, status in answers if status == 429} == {0, 1}, answers


async def leader_of(hub: httpx.AsyncClient, *, other_than: str | None = None) -> str:
    async def check() -> str:
        shown = (await answered(lambda: hub.get("/api/hub/state"))).json()
        assert shown["leader"] is not None, shown
        assert shown["leader"] != other_than, shown
        return shown["leader"]

    return await eventually(check, timeout=60)


def pid_of(process: ServiceProcess) -> int:
    assert process.process is not None
    return process.process.pid


class Faults:
    """kill -9 of one replica of each service in turn, then of one NATS node; none is
    started again."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def kill(self, service: str, k: int = 0) -> ServiceProcess:
        process = self.cluster.replicas[service][k]
        process.kill()
        return process

    async def survivor_ready(self, service: str, k: int = 1) -> None:
        async with self.cluster.client(service, k) as client:
            ready = await eventually(lambda: answered(lambda: client.get("/readyz")), timeout=60)
            assert ready.status_code == 200, ready.text

    async def queue(self) -> None:
        self.kill("queue")

    async def scheduler(self) -> None:
        self.kill("scheduler")
        async with self.cluster.client("scheduler", 1) as second:  # the override outlives it
            shown = (await answered(lambda: second.get("/api/agents/probe/rate-limits"))).json()
        assert (shown["light"], shown["overridden"]) == (LIGHT, True)

    async def llm_registry(self) -> None:
        self.kill("llm-registry")
        await self.survivor_ready("llm-registry")

    async def hubfsm(self) -> None:
        """The leading brain's process dies; the other replica's brain takes the lead."""
        hubs = self.cluster.replicas["hubfsm"]
        async with self.cluster.client("hubfsm", 1) as hub:
            before = await leader_of(hub)
            leading = next(k for k, p in enumerate(hubs) if f":{pid_of(p)}:" in before)
            self.kill("hubfsm", leading)
        other = 1 - leading
        async with self.cluster.client("hubfsm", other) as hub:
            after = await leader_of(hub, other_than=before)
        assert f":{pid_of(hubs[other])}:" in after, (before, after)

    async def dashboard(self) -> None:
        self.kill("dashboard")
        await self.survivor_ready("dashboard")

    async def nats(self) -> None:
        """The node every sidecar was given (they go on through the ones it announced)."""
        node = self.cluster.nodes[0]
        node.process.kill()
        node.process.wait()

    def in_turn(self) -> list[Callable[[], Awaitable[None]]]:
        return [self.queue, self.scheduler, self.llm_registry, self.hubfsm, self.dashboard]


async def alerts_fired(cluster: Cluster, into: list[Json]) -> contextlib.AsyncExitStack:
    """Every `agentcom.evt.alert.fired`, through the cluster's last node (kept up)."""
    stack = contextlib.AsyncExitStack()
    nc = await nats.connect(cluster.nodes[-1].url)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
    stack.push_async_callback(nc.close)

    async def on_fired(msg: Msg) -> None:
        into.append(json.loads(msg.data))

    await nc.subscribe("agentcom.evt.alert.fired", cb=on_fired)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
    return stack


# a nats-py client whose server died leaves its old socket's StreamWriter unclosed when it
# reconnects (as in tests/test_faults.py)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.timeout(900)  # ten services, three sidecars and six faults: minutes, not 120 s
async def test_a_replica_of_each_service_and_a_nats_node_killed_lose_and_double_nothing(
    cluster: Cluster, sidecars: Any, tmp_path: Path
) -> None:
    runs, overlaps = tmp_path / "runs.log", tmp_path / "overlaps.log"
    fired: list[Json] = []
    faults = Faults(cluster)
    submitted: list[str] = []
    async with (
        await alerts_fired(cluster, fired),
        cluster.client("queue", 1) as api,  # the replicas killed are the first ones
        cluster.client("scheduler", 1) as agents,
    ):
        await start_agents(agents, sidecars, cluster.nodes[0].address, AGENTS)
        steps = [*faults.in_turn(), faults.nats]
        per_wave = TASKS // (len(steps) + 1)

        async def submit_wave() -> None:
            for _ in range(per_wave):
                body = {
                    "description": f"cluster fault {len(submitted)}",
                    "metadata": {"command": command(runs, overlaps)},
                    "max_retries": 10,
                }
                made = await eventually(
                    lambda b=body: answered(lambda: api.post("/api/tasks", json=b)), timeout=30
                )
                assert made.status_code == 201, made.text
                submitted.append(made.json()["id"])

        async def flowing(at_least: int) -> None:
            ended = [t for t in await all_tasks(api) if t["state"] in TERMINAL]
            assert len(ended) >= at_least, (len(ended), at_least)

        await submit_wave()
        await one_bucket_for_both(cluster)  # while the first wave runs
        for n, fault in enumerate(steps):
            await eventually(lambda n=n: flowing(n * per_wave + 2), timeout=120)
            await fault()
            await submit_wave()

        async def every_task_ended() -> list[Json]:
            tasks = {t["id"]: t for t in await all_tasks(api)}
            assert set(submitted) <= set(tasks), "a submitted task is gone"
            waiting = [
                (i, tasks[i]["state"]) for i in submitted if tasks[i]["state"] != "completed"
            ]
            assert not waiting, (len(waiting), waiting[:5])
            return [tasks[i] for i in submitted]

        try:
            ended = await eventually(every_task_ended, timeout=180, pause=0.5)
        except AssertionError as exc:
            raise AssertionError(await stuck_report(api, agents, AGENTS, submitted)) from exc
        assert len(submitted) == per_wave * (len(steps) + 1)
        await check_every_history(api, ended, runs)
        assert not overlaps.exists(), overlaps.read_text()  # no agent ran two at once
        rules = [f["rule_id"] for f in fired]
        assert len(rules) == len(set(rules)), rules  # judged by one leader, across its death
        async with cluster.client("dashboard", 1) as dashboard:  # the survivor lists them
            listed = await answered(lambda: dashboard.get("/api/dashboard/alerts"))
        assert listed.status_code == 200, listed.text
