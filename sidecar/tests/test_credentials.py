"""The sidecar connects with its agent's own NATS user, allowed only its own subjects."""

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.msg import Msg

from agentcom_common import embedded, messaging
from agentcom_common.contracts.agent import Assign, Start
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import eventually, free_port, task_view
from agentcom_sidecar import config as sidecar_config

AGENT_RULES = {
    "publish": {"allow": ["agentcom.agent.a1.>", "$JS.API.>", "$JS.ACK.INBOX.agent-a1.>"]},
    "subscribe": {"allow": ["agentcom.agent.a1.>", "_INBOX_a1.>"]},
}


@pytest.fixture
def locked_nats(tmp_path: Path) -> Iterator[str]:
    """A nats-server where the agent's user may touch only its own subjects and replies."""
    port = free_port()
    users = [
        {"user": "hub", "password": "hubpw"},
        {"user": "agent-a1", "password": "a1pw", "permissions": AGENT_RULES},
    ]
    conf = tmp_path / "nats.conf"
    conf.write_text(
        f"listen: 127.0.0.1:{port}\n"
        f"jetstream {{ store_dir: {json.dumps(str(tmp_path / 'js'))} }}\n"
        f"authorization {{ users: {json.dumps(users)} }}\n"
    )
    process = subprocess.Popen(
        [str(embedded.nats_server_binary()), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=embedded.die_with_parent,
    )
    yield f"nats://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


def _config(tmp_path: Path, url: str, password: str) -> Path:
    path = tmp_path / "a1.json"
    body = {
        "agent_id": "a1",
        "token": "agc_x",
        "nats_url": url,
        "nats_user": "agent-a1",
        "nats_password": password,
        "allow_hub_commands": True,
        "heartbeat_interval": 0.2,
        "reconnect_wait": 0.05,
        "inbox_fetch_timeout": 0.2,
    }
    path.write_text(json.dumps(body))
    path.chmod(0o600)
    return path


async def test_with_its_own_restricted_user_the_sidecar_takes_work_and_reports(
    locked_nats: str, tmp_path: Path, run_sidecar: Any
) -> None:
    hub = await nats.connect(locked_nats, user="hub", password="hubpw", connect_timeout=10)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
    js = hub.jetstream()  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
    await messaging.ensure_streams(js, CommonSettings(nats_url=locked_nats))
    heard: list[dict[str, Any]] = []

    async def on(msg: Msg) -> None:
        body = json.loads(msg.data)
        heard.append(body)
        if body["kind"] == "accepted":  # as the scheduler answers, once the queue took it
            start = Start(task_id=body["task_id"], generation=body["generation"])
            await messaging.publish(js, "agentcom.agent.a1.inbox", start)

    await hub.subscribe("agentcom.agent.a1.report", cb=on)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
    task = task_view(id="task-00000000000000a1", metadata={"command": ["true"]})
    await messaging.publish(js, "agentcom.agent.a1.inbox", Assign(task=task, generation=1))
    try:
        async with run_sidecar(sidecar_config.load(_config(tmp_path, locked_nats, "a1pw"))):

            async def reported() -> None:
                kinds = [r["kind"] for r in heard if r["kind"] != "heartbeat"]
                assert kinds == ["hello", "accepted", "completed"]

            await eventually(reported, timeout=30)
    finally:
        await hub.close()
    assert heard[0]["task_id"] == "task-00000000000000a1"  # journaled before the first hello


async def test_a_wrong_password_keeps_it_retrying_not_crashing(
    locked_nats: str, tmp_path: Path, run_sidecar: Any
) -> None:
    config = sidecar_config.load(_config(tmp_path, locked_nats, "wrong"))
    async with run_sidecar(config) as sidecar:

        async def tried_a_while() -> None:
            assert not sidecar.connected
            assert not sidecar.stopping.is_set()
            assert config.journal_path.exists()

        await eventually(tried_a_while, timeout=10)


async def test_an_accepted_task_the_hub_never_starts_fails_saying_so_having_run_nothing(
    locked_nats: str, tmp_path: Path, run_sidecar: Any
) -> None:
    """The sidecar waits for the hub's `start` (the fence against running a task twice), but
    not forever: were that word lost, the attempt fails after `start_timeout`, unrun."""
    hub = await nats.connect(locked_nats, user="hub", password="hubpw", connect_timeout=10)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
    js = hub.jetstream()  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
    await messaging.ensure_streams(js, CommonSettings(nats_url=locked_nats))
    heard: list[dict[str, Any]] = []

    async def on(msg: Msg) -> None:
        heard.append(json.loads(msg.data))

    await hub.subscribe("agentcom.agent.a1.report", cb=on)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
    ran = tmp_path / "ran"
    task = task_view(id="task-00000000000000a2", metadata={"command": ["touch", str(ran)]})
    await messaging.publish(js, "agentcom.agent.a1.inbox", Assign(task=task, generation=1))
    path = _config(tmp_path, locked_nats, "a1pw")
    path.write_text(json.dumps(json.loads(path.read_text()) | {"start_timeout": 0.5}))
    try:
        async with run_sidecar(sidecar_config.load(path)):

            async def failed() -> None:
                kinds = [r["kind"] for r in heard if r["kind"] != "heartbeat"]
                assert kinds == ["hello", "accepted", "failed"]

            await eventually(failed, timeout=30)
    finally:
        await hub.close()
    # A heartbeat may land after the failure; read the failure itself.
    (failure,) = [r for r in heard if r["kind"] == "failed"]
    assert "start_timeout" in failure["error"], failure
    assert failure["result"]["ran"] is False
    assert not ran.exists()
