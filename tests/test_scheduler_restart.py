"""A restarted scheduler judges only the silence it could observe (issue 14).

NATS and the scheduler go down together (kill -9) while a real sidecar works on a task. While
no scheduler answers the login callout the sidecar cannot log in again, so the new scheduler
starts with the agent's last heartbeat older than the silence window and nothing from it in
the report stream (NATS dies right after the old scheduler applied a heartbeat). It must give the agent a full window from its own first read of the
reports, not fail the task at once and run it a second time.
"""

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext

from agentcom_common import subjects
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import NatsServer, ServiceProcess, eventually, running, start_nats
from agentcom_queue.app import create_app as queue_app
from agentcom_scheduler import presence

HEARTBEAT_S = 2.0  # long: NATS is killed right after one is applied, before the next is sent
MISSED = 3  # silence 5.6 s: room for the sidecar's next login once the scheduler is back
SILENCE_S = HEARTBEAT_S * (MISSED - 0.2)


def scheduler_env(nats_server: NatsServer) -> dict[str, str]:
    return {
        "AGENTCOM_SCHEDULER_NATS_ISSUER_SEED": nats_server.auth.issuer_seed,
        "AGENTCOM_SCHEDULER_HEARTBEAT_INTERVAL": f"{round(HEARTBEAT_S * 1000)}ms",
        "AGENTCOM_SCHEDULER_MISSED_HEARTBEATS": str(MISSED),
        "AGENTCOM_SCHEDULER_SWEEP_INTERVAL": "100ms",
        "AGENTCOM_SCHEDULER_ACCEPT_TIMEOUT": "20s",
        "AGENTCOM_NATS_RECONNECT_WAIT": "50ms",
    }


@pytest.fixture
async def queue(settings: CommonSettings, admin_token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with running(queue_app(settings), "http://queue") as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        yield client


# a nats-py client whose server died leaves its old socket's StreamWriter unclosed when it
# reconnects (as in sidecar/tests/test_presence.py)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_restarted_scheduler_does_not_fail_a_working_agent_it_could_not_hear(
    queue: httpx.AsyncClient,
    nats_server: NatsServer,
    db_url: str,
    admin_token: str,
    js: JetStreamContext,
    sidecars: Any,
    tmp_path: Path,
) -> None:
    scheduler = ServiceProcess(
        "scheduler", nats_server.url, db_url, tmp_path / "scheduler.log", scheduler_env(nats_server)
    )
    await asyncio.to_thread(scheduler.start)
    api = httpx.AsyncClient(
        base_url=scheduler.url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=10
    )
    nats_again: NatsServer | None = None
    try:
        made = (await api.post("/api/agents", json={"name": "steady"})).json()
        sidecars.start(
            "steady",
            sidecars.config(
                made,
                nats_server.address,
                allow_hub_commands=True,
                heartbeat_interval=HEARTBEAT_S,
                shell_isolation="none",  # its command's marks lie outside the workspace
            ),
        )

        async def agent_is(state: str) -> None:
            assert (await api.get("/api/agents/steady")).json()["state"] == state

        await eventually(lambda: agent_is("idle"), timeout=30)
        runs, release = tmp_path / "runs", tmp_path / "release"
        script = f'echo run >> "{runs}"; while [ ! -e "{release}" ]; do sleep 0.05; done'
        body = {"description": "long", "metadata": {"command": ["sh", "-c", script]}}
        task_id = (await queue.post("/api/tasks", json=body)).json()["id"]

        async def working() -> None:
            task = (await queue.get(f"/api/tasks/{task_id}")).json()
            assert task["state"] == "working", task
            assert runs.exists()

        await eventually(working, timeout=30)
        seen = (await api.get("/api/agents/steady")).json()["last_seen"]

        async def a_heartbeat_just_applied() -> None:
            info = await js.consumer_info(subjects.REPORTS_STREAM, presence.CONSUMER)
            assert info.num_pending == 0, info
            assert info.num_ack_pending == 0, info
            assert (await api.get("/api/agents/steady")).json()["last_seen"] != seen

        await eventually(a_heartbeat_just_applied, timeout=30, pause=0.005)
        port = int(nats_server.address.rsplit(":", 1)[1])
        nats_server.process.kill()  # kill -9 of NATS, then of the scheduler
        nats_server.process.wait()
        scheduler.kill()
        down_at = time.monotonic()

        async def down_longer_than_the_silence_window() -> None:
            assert time.monotonic() - down_at > SILENCE_S + 1

        await eventually(down_longer_than_the_silence_window, timeout=SILENCE_S + 10)
        nats_again = start_nats(nats_server.store, port, nats_server.auth)
        await asyncio.to_thread(scheduler.start)
        restarted_at = time.monotonic()

        async def heard_again() -> None:
            view = (await api.get("/api/agents/steady")).json()
            assert view["state"] == "working", (view, sidecars.log("steady"))
            assert time.monotonic() - restarted_at > SILENCE_S + 1  # past the window

        await eventually(heard_again, timeout=SILENCE_S + 30)
        release.touch()

        async def completed() -> dict[str, Any]:
            task = (await queue.get(f"/api/tasks/{task_id}")).json()
            assert task["state"] == "completed", task
            return task

        task = await eventually(completed, timeout=30)
        history = [
            (h["to_state"], h["reason"])
            for h in (await queue.get(f"/api/tasks/{task_id}/history")).json()
        ]
        assert task["retry_count"] == 0, history  # no attempt was failed for silence
        assert [state for state, _ in history].count("working") == 1, history
        assert runs.read_text().splitlines() == ["run"], history  # it ran once
    finally:
        await api.aclose()
        scheduler.stop()
        if nats_again is not None:
            nats_again.stop()
