"""Real sidecars for the dashboard's browser tests, on the shared harness of
tests/servers/real_sidecars.py: an agent registered with the stack's scheduler, its config as
`agentcom agent add` writes it, and `agentcom sidecar run` as a child process doing real tasks
in real git workspaces (a local bare remote)."""

from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agentcom_common.testing import NatsServer
from real_sidecars import SCHEDULER_TIMERS, agent_config, make_origin, register, spawn

__all__ = ["origin", "register", "scheduler_settings", "sidecar"]


def scheduler_settings(nats_server: NatsServer) -> dict[str, Any]:
    """What the scheduler needs to answer real sidecars' NATS logins (auth callout)."""
    return SCHEDULER_TIMERS | {"scheduler_nats_issuer_seed": nats_server.auth.issuer_seed}


origin = make_origin


@contextmanager
def sidecar(made: dict[str, Any], nats_url: str, home: Path, **extra: Any) -> Generator[Path]:
    """Run the real sidecar of agent `made` until the block ends; yields its log file."""
    process = spawn(agent_config(made, nats_url, home, **extra))
    try:
        yield home / "sidecar.log"
    finally:
        process.stop()
