"""What the faults tests (`tests/test_faults.py`, `tests/test_cluster_faults.py`) read back
through the real routes once the faults are over: every task's ending and history, where each
run happened (each task's command appends the directory it ran in to one file), and the
agents' registration and state."""

from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import httpx

from agentcom_common.testing import eventually

TERMINAL = {"completed", "dead_letter", "cancelled"}
Json = dict[str, Any]


async def answered(call: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
    """The reply of a route, as an assertion failure while the service is down (for
    `eventually`): faults are what these tests are about."""
    try:
        reply = await call()
    except httpx.HTTPError as exc:
        raise AssertionError(f"not answering: {exc!r}") from None
    assert reply.status_code < 500, reply.text
    return reply


async def all_tasks(api: httpx.AsyncClient) -> list[Json]:
    found: list[Json] = []
    cursor: str | None = None
    while True:
        params = {"limit": 200} | ({"cursor": cursor} if cursor else {})
        page = (await answered(lambda p=params: api.get("/api/tasks", params=p))).json()
        found += page["tasks"]
        cursor = page.get("next_cursor")
        if not cursor:
            return found


def runs_by_task(trace: Path) -> dict[str, Counter[str]]:
    """Each line is where a run happened: <agents>/<agent>/workspaces/scratch/<task id>."""
    runs: dict[str, Counter[str]] = {}
    for line in trace.read_text().splitlines():
        place = Path(line)
        runs.setdefault(place.name, Counter())[place.parents[2].name] += 1
    return runs


def check_history(task: Json, history: list[Json], ran: Counter[str]) -> None:
    """One ending, at most one completion, and every run in the history on its agent: a
    task has no more runs on an agent than its history has `working` transitions (an
    `accepted` that applied) by that agent, so a task handed to a second agent while the
    first still ran it would show a run the history lacks."""
    states = [h["to_state"] for h in history]
    assert sum(s in TERMINAL for s in states) == 1, (task["id"], states)
    assert states.count("completed") <= 1, (task["id"], states)
    started = Counter(h["actor"] for h in history if h["to_state"] == "working")
    for agent, times in ran.items():
        assert times <= started[agent], (task["id"], dict(ran), dict(started), states)
    if task["state"] == "completed":
        assert ran, (task["id"], states)  # it did run


async def check_every_history(api: httpx.AsyncClient, ended: list[Json], trace: Path) -> None:
    runs_of = runs_by_task(trace)
    for task in ended:
        history = (await answered(lambda t=task: api.get(f"/api/tasks/{t['id']}/history"))).json()
        check_history(task, history, runs_of.get(task["id"], Counter()))


async def start_agents(
    agents: httpx.AsyncClient, sidecars: Any, nats_address: str, names: Iterable[str]
) -> dict[str, Path]:
    """Register `names` through the scheduler (`agents`, an admin client), start a real
    sidecar for each (`sidecars`: tests/conftest.py's `Sidecars`) and wait until all are idle.
    """
    configs: dict[str, Path] = {}
    for name in names:
        made = (await agents.post("/api/agents", json={"name": name})).json()
        configs[name] = sidecars.config(
            made,
            nats_address,
            allow_hub_commands=True,
            heartbeat_interval=0.5,
            shell_isolation="none",  # every run appends to one trace outside the workspaces
        )
        sidecars.start(name, configs[name])

    async def all_idle() -> None:
        for name in configs:
            agent = (await answered(lambda n=name: agents.get(f"/api/agents/{n}"))).json()
            assert agent["state"] == "idle", agent

    await eventually(all_idle, timeout=60)
    return configs


async def stuck_report(
    api: httpx.AsyncClient, agents: httpx.AsyncClient, names: Iterable[str], submitted: list[str]
) -> str:
    """Where a faults run is stuck: the agents, and the history of a few unended tasks."""
    tasks = {t["id"]: t for t in await all_tasks(api)}
    stuck = [i for i in submitted if tasks.get(i, {}).get("state") not in TERMINAL][:3]
    lines = [f"{len(stuck)}+ tasks not ended"]
    for name in names:
        agent = (await answered(lambda n=name: agents.get(f"/api/agents/{n}"))).json()
        history = (await agents.get(f"/api/agents/{name}/history")).json()[-4:]
        lines.append(f"agent {name}: {agent['state']} {agent.get('blocked_reason')} {history}")
    for task_id in stuck:
        history = (await api.get(f"/api/tasks/{task_id}/history")).json()
        lines.append(f"task {task_id}: {tasks.get(task_id)} {history}")
    return "\n".join(lines)
