"""A compromised agent cannot stop the fleet with reports that can never be processed (issue 15).

With only its own NATS login, agent `evil` floods its report subject with 1,100 small task
outcomes whose `result` holds a NUL (Postgres stores none). Each must be refused once
(terminated and recorded as `agentcom.evt.system.message_refused`), count against `evil` (which
is cut off), and never hold up the other agent: a real sidecar, `good`, keeps getting tasks
and finishing them, and the scheduler's report consumer ends with nothing unacked.
"""

import json
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from agentcom_common import subjects
from agentcom_common.testing import NatsServer, eventually

Hub = tuple[httpx.AsyncClient, httpx.AsyncClient]
FLOOD = 1100


async def test_a_flood_of_unprocessable_outcomes_is_refused_once_and_another_agent_keeps_working(
    hub: Hub,
    sidecars: Any,
    repos: Any,
    nats_server: NatsServer,
    nc: Client,
    js: JetStreamContext,
    tmp_path: Path,
) -> None:
    queue, scheduler = hub
    origin: Path = repos.origin(tmp_path, {"README.md": "hello\n"})
    evil = (await scheduler.post("/api/agents", json={"name": "evil"})).json()
    good = (await scheduler.post("/api/agents", json={"name": "good"})).json()
    sidecars.start(
        "good",
        sidecars.config(
            good, nats_server.address, allow_hub_commands=True, repos=[{"url": str(origin)}]
        ),
    )

    async def good_idle() -> None:
        view = (await scheduler.get("/api/agents/good")).json()
        assert view["state"] == "idle", sidecars.log("good")

    await eventually(good_idle, timeout=30)

    refused: list[dict[str, Any]] = []

    async def on_refused(msg: Msg) -> None:
        refused.append(json.loads(msg.data))

    await nc.subscribe(subjects.MESSAGE_REFUSED, cb=on_refused)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
    attacker = await nats.connect(  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
        nats_server.address,
        user=evil["nats_user"],
        password=evil["nats_password"],
        allow_reconnect=False,
    )
    poison = {
        "kind": "completed",
        "agent_id": "evil",
        "task_id": "task-00000000000000aa",
        "generation": 1,
        "result": {"log": "a\x00b"},
    }
    for _ in range(FLOOD):
        await attacker.publish("agentcom.agent.evil.report", json.dumps(poison).encode())
    await attacker.flush()

    ids: list[str] = []
    for n in range(3):
        made = await queue.post(
            "/api/tasks",
            json={
                "description": f"after the flood {n}",
                "repo": str(origin),
                "metadata": {"command": ["sh", "-c", f"echo {n} > out-{n}.txt"]},
                "verification_steps": [{"type": "file_exists", "path": f"out-{n}.txt"}],
            },
        )
        assert made.status_code == 201, made.text
        ids.append(made.json()["id"])

    async def finished() -> None:
        for task_id in ids:
            task = (await queue.get(f"/api/tasks/{task_id}")).json()
            assert (task["state"], task["assigned_to"]) == ("completed", "good"), task

    await eventually(finished, timeout=60)

    async def all_refused_once() -> None:
        info = await js.consumer_info("REPORTS", "scheduler-presence")
        assert (info.num_pending, info.num_ack_pending) == (0, 0), info
        assert len(refused) == FLOOD
        assert {(r["agent_id"], r["deliveries"]) for r in refused} == {("evil", 1)}

    await eventually(all_refused_once, timeout=30)
    assert sum(r["violation"] for r in refused) >= 10  # counted; at the limit evil is cut off
    assert {r["code"] for r in refused} == {"invalid_field"}

    async def kicked() -> None:
        assert attacker.is_closed

    await eventually(kicked)
