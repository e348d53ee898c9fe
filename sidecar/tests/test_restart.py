"""`restart` from the hub under a real supervising parent: report, exit, come back, reconnect."""

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentcom_common.testing import eventually

SUPERVISE = Path(__file__).with_name("supervise.py")


async def test_restart_reports_restarting_exits_and_the_supervisor_brings_it_back(
    hub: Any, processes: Callable[..., Any], listen: Any, tmp_path: Path
) -> None:
    config = await hub.agent("lazarus", allow_hub_commands=True)
    reports: list[dict[str, Any]] = await listen("lazarus")
    exits = tmp_path / "exits.txt"
    command = [sys.executable, "-m", "agentcom_sidecar", "run", "--config", str(config.path)]
    supervisor = [sys.executable, str(SUPERVISE), str(exits), "3", *command]
    processes(config, supervisor, {"AGENTCOM_SUPERVISOR": "test-supervisor"})

    def hellos() -> list[dict[str, Any]]:
        return [r for r in reports if r["kind"] == "hello"]

    async def first_hello() -> int:
        assert hellos()
        assert hellos()[0]["supervisor"] == "test-supervisor"
        assert config.status_path.exists()
        return int(json.loads(config.status_path.read_text())["pid"])

    first_pid = await eventually(first_hello, timeout=60)

    sent = await hub.scheduler.post("/api/agents/lazarus/restart")
    assert sent.status_code == 202

    async def back() -> None:
        kinds = [r["kind"] for r in reports if r["kind"] != "heartbeat"]
        assert kinds.count("restarting") == 1, kinds
        assert kinds[kinds.index("restarting") :] == ["restarting", "hello"], kinds
        assert exits.read_text() == "0\n"
        status = json.loads(config.status_path.read_text())
        assert status["pid"] != first_pid
        assert status["connected"] is True

    await eventually(back, timeout=60)

    made = await hub.submit(metadata={"command": ["true"]})

    async def served() -> None:  # the new process takes work
        agent = (await hub.scheduler.get("/api/agents/lazarus")).json()
        assert (await hub.task(made["id"]))["state"] == "completed", agent

    await eventually(served, timeout=30)
