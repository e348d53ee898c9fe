"""kill -9 of a real sidecar process at each dangerous point, then a restart: every case ends
with exactly one correct outcome at the queue.

The crash points before the inbox ack and around the report publish are hit by the sidecar
killing itself with SIGKILL there (`fault_kill_at`, a real crash at an exact point; it fires
once per state dir); the mid-run case is a SIGKILL from the test while the command runs.
"""

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentcom_common.testing import eventually
from agentcom_sidecar import namespaces

Start = Callable[..., Any]


async def _settled(hub: Any, task_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any]:
        task = await hub.task(task_id)
        assert task["state"] == "completed", task
        return task

    return await eventually(check, timeout=60)


def _outcomes(history: list[dict[str, Any]]) -> list[str]:
    return [h["to_state"] for h in history if h["to_state"] in ("completed", "failed")]


async def _died(process: Any) -> None:
    async def check() -> None:
        assert process.process.poll() == -signal.SIGKILL

    await eventually(check, timeout=60)


@pytest.mark.parametrize(
    "point", ["before_inbox_ack", "before_report_publish", "after_report_publish"]
)
async def test_a_sidecar_killed_at_a_crash_point_comes_back_and_reports_once(
    hub: Any, processes: Start, tmp_path: Path, point: str
) -> None:
    config = await hub.agent("phoenix", allow_hub_commands=True, fault_kill_at=point)
    first = processes(config)
    made = await hub.submit(metadata={"command": ["sh", "-c", "echo ran >> runs.txt; echo ok"]})
    await _died(first)

    processes(config)  # the same state dir: the fault fired once and does not fire again
    task = await _settled(hub, made["id"])

    history = await hub.history(made["id"])
    assert _outcomes(history) == ["completed"]
    assert task["retry_count"] == 0
    assert task["generation"] == 1
    assert (config.path.parent / "phoenix-state" / f"fault-{point}.fired").exists()
    runs = config.workspaces / "scratch" / made["id"] / "runs.txt"
    assert runs.read_text() == "ran\n"  # the command ran exactly once
    assert "agc_" not in (config.path.parent / "sidecar.log").read_text()  # token never logged


async def test_a_sidecar_killed_before_journaling_an_assignment_still_ends_with_one_outcome(
    hub: Any, processes: Start
) -> None:
    config = await hub.agent("forgetful", allow_hub_commands=True, fault_kill_at="before_journal")
    first = processes(config)
    made = await hub.submit(metadata={"command": ["sh", "-c", "echo ok"]})
    await _died(first)

    processes(config)  # the hub may take the task back and assign it again: either way, once
    await _settled(hub, made["id"])

    assert _outcomes(await hub.history(made["id"])) == ["completed"]


async def test_a_sidecar_killed_mid_run_stops_the_orphan_fails_the_attempt_and_the_retry_completes(
    hub: Any, processes: Start, tmp_path: Path
) -> None:
    # unisolated: the marker lies outside the workspace and holds a host pid (the sandboxed
    # case is the next test)
    config = await hub.agent("phoenix", allow_hub_commands=True, shell_isolation="none")
    marker = tmp_path / "sleeper.pid"
    script = (
        f'if [ -e "{marker}" ]; then echo second run; exit 0; fi; '
        f'sleep 300 & echo $! > "{marker}.tmp"; mv "{marker}.tmp" "{marker}"; wait'
    )
    first = processes(config)
    made = await hub.submit(metadata={"command": ["sh", "-c", script]})

    async def running() -> int:
        assert marker.exists()
        return int(marker.read_text())

    sleeper = await eventually(running, timeout=60)
    first.kill()
    assert _alive(sleeper)  # the grandchild outlived the sidecar: recovery must stop it

    processes(config)
    task = await _settled(hub, made["id"])

    assert not _alive(sleeper)
    history = await hub.history(made["id"])
    assert _outcomes(history) == ["failed", "completed"]
    assert "restarted while the task was running" in (task["last_error"] or ""), task
    assert task["retry_count"] == 1
    assert task["result"]["output_tail"] == "second run"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    return state != "Z"  # a zombie is dead, only not yet reaped by its new parent


def _sleepers_in(folder: Path) -> list[int]:
    """Host pids of `sleep 300` processes working in `folder` (seen from outside any sandbox)."""
    found: list[int] = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            here = (proc / "cwd").resolve() == folder.resolve()
        except OSError:
            continue
        if argv[:2] == [b"sleep", b"300"] and here and _alive(int(proc.name)):
            found.append(int(proc.name))
    return found


@pytest.mark.skipif(not namespaces.available(), reason="no user namespaces on this machine")
async def test_a_sidecar_killed_mid_a_sandboxed_run_stops_the_sandbox_on_restart(
    hub: Any, processes: Start
) -> None:
    """`unshare` survives the sidecar (entering the user namespace drops the parent-death
    signal), and its pid namespace with it: the gate before `unshare` journaled its group, so
    recovery stops the whole sandbox, and the retry runs in a new one."""
    config = await hub.agent("phoenix", allow_hub_commands=True)
    script = "if [ -e started ]; then echo second run; exit 0; fi; touch started; sleep 300 & wait"
    first = processes(config)
    made = await hub.submit(metadata={"command": ["sh", "-c", script]})
    workspace = config.workspaces / "scratch" / made["id"]

    async def running() -> None:
        assert _sleepers_in(workspace)

    await eventually(running, timeout=60)
    first.kill()
    await _died(first)
    assert _sleepers_in(workspace)  # outlived the sidecar: recovery must stop it

    processes(config)
    task = await _settled(hub, made["id"])

    assert not _sleepers_in(workspace)
    assert _outcomes(await hub.history(made["id"])) == ["failed", "completed"]
    assert task["result"]["output_tail"] == "second run"
