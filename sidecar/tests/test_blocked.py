"""An agent that cannot take work says so, gets none while so, and leaves `blocked` when it can
again (issue 14: the `blocked` state could not be reached). Driven through a real sidecar, the
real scheduler and queue: the workspaces dir is made unusable (its parent is a file), then
usable again."""

from pathlib import Path
from typing import Any

from agentcom_common.testing import eventually


async def test_an_agent_whose_workspaces_are_unusable_is_blocked_gets_no_work_then_recovers(
    hub: Any, run_sidecar: Any, tmp_path: Path
) -> None:
    in_the_way = tmp_path / "disk"
    in_the_way.write_text("a file where the workspaces' parent should be")
    config = await hub.agent(
        "stuck", allow_hub_commands=True, workspaces_dir=str(in_the_way / "ws")
    )
    async with run_sidecar(config):

        async def blocked() -> dict[str, Any]:
            agent = (await hub.scheduler.get("/api/agents/stuck")).json()
            assert agent["state"] == "blocked", agent
            return agent

        agent = await eventually(blocked, timeout=30)
        assert "workspaces dir" in agent["blocked_reason"], agent
        made = await hub.submit(metadata={"command": ["true"]})

        async def heard_twice_since() -> None:  # it keeps beating, still blocked, task waits
            now = (await hub.scheduler.get("/api/agents/stuck")).json()
            assert now["last_seen"] > agent["last_seen"], now
            assert now["state"] == "blocked", now

        await eventually(heard_twice_since, timeout=30)
        task = await hub.task(made["id"])
        assert (task["state"], task["assigned_to"]) == ("queued", None), task

        in_the_way.unlink()  # the disk is back

        async def done() -> None:
            assert (await hub.task(made["id"]))["state"] == "completed"

        await eventually(done, timeout=30)
    history = (await hub.scheduler.get("/api/agents/stuck/history")).json()
    moves = [(h["from_state"], h["to_state"]) for h in history]
    assert ("idle", "blocked") in moves, moves
    assert ("blocked", "idle") in moves, moves
    assert any(h["to_state"] == "idle" and h["reason"].startswith("ready") for h in history)
    assert (await hub.task(made["id"]))["retry_count"] == 0


async def test_a_restart_of_a_sidecar_nothing_supervises_is_refused_and_it_keeps_serving(
    hub: Any, run_sidecar: Any, monkeypatch: Any
) -> None:
    """Restarting means exiting for the supervisor to start it again: by hand, nothing would."""
    monkeypatch.delenv("AGENTCOM_SUPERVISOR", raising=False)
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    config = await hub.agent("by-hand", allow_hub_commands=True)
    async with run_sidecar(config) as sidecar:

        async def said_hello() -> None:
            agent = (await hub.scheduler.get("/api/agents/by-hand")).json()
            assert agent["supervisor"] == "none", agent

        await eventually(said_hello, timeout=30)
        refused = await hub.scheduler.post("/api/agents/by-hand/restart")
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "not_supervised"
        assert "supervisor" in refused.json()["detail"]

        made = await hub.submit(metadata={"command": ["true"]})

        async def done() -> None:
            assert (await hub.task(made["id"]))["state"] == "completed"

        await eventually(done, timeout=30)
        assert not sidecar.stopping.is_set()
