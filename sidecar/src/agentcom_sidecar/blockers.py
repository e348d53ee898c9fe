"""What keeps this agent from taking any work now: its workspaces cannot be written, their disk
is nearly full, or no executor it has can run.

Each heartbeat carries the answer (`Heartbeat.blocked`), so the scheduler moves the agent to
`blocked` and gives it no work until a heartbeat no longer says so (level, not edge: a lost
report or a restarted scheduler is set right by the next beat). An assignment that crossed the
first such heartbeat is rejected with `agent_blocked` and goes back without a retry. Problems of
one task (its repo will not clone, its command is missing) are that task's rejection instead.
"""

import asyncio
import os
import shutil
from pathlib import Path

from agentcom_sidecar.config import SidecarConfig
from agentcom_sidecar.executors import registry

REASON_MAX = 500  # `Heartbeat.blocked`'s bound


async def check(config: SidecarConfig) -> str | None:
    """Why this agent cannot take work now (at most REASON_MAX characters), None if it can."""
    why = await _why(config)
    return why if why is None or len(why) <= REASON_MAX else why[: REASON_MAX - 1] + "…"


async def _why(config: SidecarConfig) -> str | None:
    try:
        free_mb = await asyncio.to_thread(_free_mb, config.workspaces)
    except OSError as exc:
        return f"workspaces dir {config.workspaces} is unusable: {exc.strerror or exc}"
    if free_mb < config.min_free_disk_mb:
        return (
            f"only {free_mb} MB free for workspaces; this agent needs "
            f"{config.min_free_disk_mb} MB (min_free_disk_mb)"
        )
    # in a thread: `unavailable` may run the one-time namespace probe, and this is the
    # heartbeat's path, which must never stall the loop
    missing = await asyncio.to_thread(
        lambda: [registry.unavailable(name, config) for name in config.executors]
    )
    if all(m is not None for m in missing):
        why = "; ".join(m[1] for m in missing if m is not None) or "none is enabled"
        return f"no executor can run here: {why}"
    return None


def _free_mb(path: Path) -> int:
    path.mkdir(parents=True, exist_ok=True)
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(13, "not writable by the sidecar", str(path))
    return shutil.disk_usage(path).free // 2**20
