"""Backups and restore (issue 20) against real stacks: `agentcom up` takes a backup on its
schedule, `agentcom backup` another, and `agentcom restore` puts it into a fresh home whose
Postgres then holds every task, history row, agent and goal the first one had."""

import asyncio
import json
from pathlib import Path
from typing import Any, Final

import asyncpg
import httpx
import pytest

from agentcom_cli import dumps
from agentcom_common import embedded
from agentcom_common.testing import shared_tmpdir
from up_stack import Stack, cli, cli_env, free_offset, wait_all_ready, wait_until

pytestmark = pytest.mark.system


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


# what must survive, as rows: every task, history row, agent, goal and goal history row
CONTENTS: Final = {
    "tasks": "SELECT id FROM queue.tasks",
    "history": "SELECT id, task_id, to_state, at FROM queue.task_history",
    "agents": "SELECT id FROM scheduler.agents",
    "goals": "SELECT id FROM hub.goals",
    "goal history": "SELECT id, goal_id, to_state FROM hub.goal_history",
}


async def _contents(url: str) -> dict[str, set[tuple[object, ...]]]:
    connect: Any = asyncpg.connect  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # asyncpg: no stubs
    conn = await connect(url)
    try:
        return {kind: {tuple(r) for r in await conn.fetch(sql)} for kind, sql in CONTENTS.items()}
    finally:
        await conn.close()


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


@pytest.mark.timeout(300)  # a stack starts and stops on a shared, busy machine
def test_a_backup_restored_into_a_fresh_home_has_every_task_agent_history_row_and_goal() -> None:
    root = shared_tmpdir("agentcom-backup-")
    first, fresh = root / "first", root / "fresh"
    env = cli_env(first, AGENTCOM_BACKUP_INTERVAL="1h", AGENTCOM_BACKUP_KEEP="2")
    up = Stack(first, env, "--port-offset", str(free_offset()))
    try:
        wait_all_ready(up)
        # a home without backups gets one as soon as the stack is up
        wait_until(lambda: len(dumps.listed(first)) == 1, 60, "the scheduled backup")
        _fill(up)
        before = asyncio.run(_contents(up.stack["database_url"]))
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
    # the restored home's own Postgres, as its next `agentcom up` will start it
    layout = embedded.PostgresLayout(
        data_dir=fresh / "postgres", socket_dir=embedded.socket_dir_for(fresh), port=5432
    )
    with embedded.postgres_running(layout, root / "fresh-postgres.log"):
        asyncio.run(embedded.wait_for_postgres(layout, deadline=60))
        after = asyncio.run(_contents(layout.url))
    for kind, rows in before.items():  # the hub may add rows between the reading and the backup
        assert rows, kind
        assert rows <= after[kind], (kind, rows - after[kind])
