"""First use (issue 14) with real sidecar processes: an agent added with `--repo /x/origin.git`
takes the tasks on that repo; a queued task says why no agent takes it; a task an agent's
config will never let it run goes to an agent that can, without using a retry, and waits
`queued` with the reason while none can.
"""

from pathlib import Path
from typing import Any

import httpx

from agentcom_common.testing import NatsServer, eventually

Json = dict[str, Any]
Hub = tuple[httpx.AsyncClient, httpx.AsyncClient]


async def add_agent(hub: Hub, sidecars: Any, nats: NatsServer, name: str, **agent: Any) -> Path:
    """Register as `agentcom agent add` does (its config has no repos) and write the config."""
    _, scheduler = hub
    config = agent.pop("config", {})
    made = await scheduler.post("/api/agents", json={"name": name} | agent)
    assert made.status_code == 201, made.text
    return sidecars.config(made.json(), nats.address, **config)


async def start(hub: Hub, sidecars: Any, name: str, config: Path) -> None:
    _, scheduler = hub
    sidecars.start(name, config)

    async def idle() -> None:
        view = (await scheduler.get(f"/api/agents/{name}")).json()
        assert view["state"] == "idle", (view, sidecars.log(name))

    await eventually(idle, timeout=30)


async def submit(queue: httpx.AsyncClient, **task: Any) -> str:
    made = await queue.post("/api/tasks", json={"description": "first use"} | task)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


async def task_of(queue: httpx.AsyncClient, task_id: str) -> Json:
    got = await queue.get(f"/api/tasks/{task_id}")
    assert got.status_code == 200, got.text
    return got.json()


async def ended(queue: httpx.AsyncClient, task_id: str) -> Json:
    async def check() -> Json:
        task = await task_of(queue, task_id)
        assert task["state"] == "completed", task
        return task

    return await eventually(check, timeout=60)


def shell(origin: Path, out: str) -> Json:
    return {
        "repo": str(origin),
        "metadata": {"command": ["sh", "-c", f"echo done > {out}"]},
        "verification_steps": [{"type": "file_exists", "path": out}],
    }


async def test_an_agent_added_with_a_dot_git_repo_takes_its_tasks_and_a_queued_task_says_why_not(
    hub: Hub, sidecars: Any, repos: Any, nats_server: NatsServer, tmp_path: Path
) -> None:
    queue, _ = hub
    origin: Path = repos.origin(tmp_path, {"README.md": "hi\n"})
    assert origin.name == "origin.git"
    config = await add_agent(
        hub,
        sidecars,
        nats_server,
        "solo",
        capabilities=["python"],
        repos=[f"{origin}/"],  # as typed: `agentcom agent add --repo /x/origin.git/`
        config={"allow_hub_commands": True},
    )
    task = await submit(queue, needed_capabilities=["python"], **shell(origin, "a.txt"))
    waiting = await task_of(queue, task)
    assert waiting["state"] == "queued"
    assert waiting["waiting_reason"] == "no agent is online (solo offline)", waiting

    await start(hub, sidecars, "solo", config)
    done = await ended(queue, task)
    assert done["assigned_to"] == "solo", done
    assert done["retry_count"] == 0, done
    assert done["waiting_reason"] is None

    gpu = await submit(queue, needed_capabilities=["gpu"], **shell(origin, "b.txt"))
    elsewhere = await submit(queue, **shell(tmp_path / "elsewhere.git", "c.txt"))
    assert (await task_of(queue, gpu))["waiting_reason"] == (
        "no online agent can take it: solo lacks capability gpu"
    )
    assert (await task_of(queue, elsewhere))["waiting_reason"] == (
        f"no online agent can take it: solo does not serve repo {tmp_path}/elsewhere"
        f" (it serves {tmp_path}/origin)"
    )


async def test_a_task_an_agent_may_never_run_waits_with_the_reason_then_runs_on_one_that_can(
    hub: Hub, sidecars: Any, repos: Any, nats_server: NatsServer, tmp_path: Path
) -> None:
    queue, _ = hub
    origin: Path = repos.origin(tmp_path, {"README.md": "hi\n"})
    strict = await add_agent(hub, sidecars, nats_server, "strict")  # allow_hub_commands off
    able = await add_agent(hub, sidecars, nats_server, "able", config={"allow_hub_commands": True})
    await start(hub, sidecars, "strict", strict)
    task = await submit(queue, max_retries=1, **shell(origin, "out.txt"))

    async def refused_and_waiting() -> None:
        view = await task_of(queue, task)
        assert view["waiting_reason"] == (
            "no online agent can take it: strict cannot run it: this agent does not run shell "
            "commands from the hub (allow_hub_commands is off)"
        ), view
        assert view["state"] == "queued", view
        assert view["retry_count"] == 0, view

    await eventually(refused_and_waiting, timeout=30)

    await start(hub, sidecars, "able", able)
    done = await ended(queue, task)
    assert done["assigned_to"] == "able", done
    assert done["retry_count"] == 0, done
    history = (await queue.get(f"/api/tasks/{task}/history")).json()
    moves = [(h["from_state"], h["to_state"]) for h in history]
    # offered to strict once (refused, handed back without a retry), then to able
    assert moves.count(("queued", "assigned")) == 2, history
    assert ("assigned", "failed") not in moves, history
    requeued = [h for h in history if h["to_state"] == "queued" and h["from_state"]]
    assert requeued[0]["reason"].startswith("agent strict cannot run it: "), history
