"""Backups and restore (issue 20) against real stacks: `agentcom up` takes a backup on its
schedule, `agentcom backup` another, and `agentcom restore` puts it into a fresh home whose
stack then serves every task, history row, agent and goal the first one had."""

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentcom_cli import dumps
from agentcom_common.testing import shared_tmpdir
from up_stack import Stack, cli, cli_env, free_offset, wait_until

pytestmark = pytest.mark.system
Json = dict[str, Any]


def test_every_service_schema_is_backed_up() -> None:
    from agentcom_common import auth
    from agentcom_dashboard.tables import metadata as dashboard
    from agentcom_hubfsm.tables import metadata as hub
    from agentcom_llm_registry.tables import metadata as llm
    from agentcom_queue.tables import metadata as queue
    from agentcom_scheduler.tables import metadata as scheduler

    owned = {m.schema for m in (auth.metadata, dashboard, hub, llm, queue, scheduler)}
    assert owned == set(dumps.SCHEMAS)


def _client(up: Stack, service: str) -> httpx.Client:
    token = (up.home / "admin.token").read_text().strip()
    return httpx.Client(
        base_url=up.stack["services"][service],
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def _contents(up: Stack) -> Json:
    """What must survive: every task with its history rows, every agent, every goal."""
    with _client(up, "queue") as queue, _client(up, "scheduler") as sched:
        tasks = queue.get("/api/tasks", params={"limit": 200}).json()["tasks"]
        history = {
            t["id"]: [
                (h["to_state"], h["at"]) for h in queue.get(f"/api/tasks/{t['id']}/history").json()
            ]
            for t in tasks
        }
        agents = sorted(a["id"] for a in sched.get("/api/agents").json())
    with _client(up, "hubfsm") as hub:
        goals = sorted(
            g["id"] for g in hub.get("/api/goals", params={"limit": 500}).json()["goals"]
        )
    return {"tasks": sorted(history), "history": history, "agents": agents, "goals": goals}


def _fill(up: Stack) -> None:
    with _client(up, "queue") as queue, _client(up, "scheduler") as sched:
        made = [queue.post("/api/tasks", json={"description": f"kept {n}"}) for n in range(5)]
        assert [m.status_code for m in made] == [201] * 5, made[0].text
        cancelled = queue.post(f"/api/tasks/{made[0].json()['id']}/cancel")
        assert cancelled.status_code == 200, cancelled.text  # one more history row
        for name in ("keeper", "minder"):
            assert sched.post("/api/agents", json={"name": name}).status_code == 201
    with _client(up, "hubfsm") as hub:
        goal = {"title": "Survive", "success_criteria": ["it is back"], "repo": "/srv/app"}
        assert hub.post("/api/goals", json=goal).status_code == 201


@pytest.mark.timeout(400)  # two stacks start and stop on a shared, busy machine
def test_a_backup_restored_into_a_fresh_home_has_every_task_agent_history_row_and_goal() -> None:
    root = shared_tmpdir("agentcom-backup-")
    first, fresh = root / "first", root / "fresh"
    env = cli_env(first, AGENTCOM_BACKUP_INTERVAL="1h", AGENTCOM_BACKUP_KEEP="2")
    up = Stack(first, env, "--port-offset", str(free_offset()))
    try:
        # a home without backups gets one as soon as the stack is up
        wait_until(lambda: len(dumps.listed(first)) == 1, 60, "the scheduled backup")
        _fill(up)
        before = _contents(up)
        taken = [cli(env, "backup", "--json") for _ in range(2)]
        assert [t.returncode for t in taken] == [0, 0], taken[0].stderr
        backup = Path(json.loads(taken[1].stdout)["file"])
        assert dumps.listed(first)[0].path == backup
        assert len(dumps.listed(first)) == 2  # the newest AGENTCOM_BACKUP_KEEP
        assert not list((first / "backups").glob(".*partial"))

        status = cli(env, "status", "--json")
        parts = {p["part"]: p for p in json.loads(status.stdout)["parts"]}
        assert parts["backups"]["ok"], parts["backups"]
        assert parts["backups"]["detail"].startswith("newest 0:00:"), parts["backups"]

        refused = cli(env, "restore", str(backup))
        assert refused.returncode == 1
        assert "already running" in refused.stderr
        assert "stop it first" in refused.stderr
    finally:
        assert up.interrupt() == 0

    fresh_env = cli_env(fresh)
    junk = root / "junk.dump"
    junk.write_bytes(b"not a dump")
    bad = cli(fresh_env, "restore", str(junk))
    assert bad.returncode == 1
    assert "not a readable pg_dump archive" in bad.stderr
    assert not (fresh / "postgres").exists()  # refused before anything started

    restored = cli(fresh_env, "restore", str(backup), "--json")
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["schemas"] == list(dumps.SCHEMAS)
    again = Stack(fresh, fresh_env, "--port-offset", str(free_offset()))
    try:
        after = _contents(again)
    finally:
        again.interrupt()
    # a superset: the hub may act between the reading and the backup
    for kind in ("tasks", "agents", "goals"):
        assert before[kind], kind
        assert set(before[kind]) <= set(after[kind]), kind
    for task_id, rows in before["history"].items():
        assert set(rows) <= set(after["history"][task_id]), task_id
