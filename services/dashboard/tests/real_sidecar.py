"""Real sidecars for the dashboard's browser tests: an agent registered with the stack's
scheduler, its config as `agentcom agent add` writes it, and `python -m agentcom_sidecar run`
as a child process doing real tasks in real git workspaces (a local bare remote, GitHub played
by `fake_github`)."""

import json
import os
import subprocess
import sys
from collections.abc import Generator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from agentcom_common.testing import ChildProcess, NatsServer

# the scheduler's timers with real sidecars: short, but a sidecar answers well within them
SCHEDULER_TIMERS: dict[str, Any] = {
    "scheduler_sweep_interval": timedelta(milliseconds=100),
    "scheduler_heartbeat_interval": timedelta(milliseconds=300),
    # 12 s of silence before an agent's task is handed back: at load 15 a starved sidecar
    # missed 3 s of heartbeats and its agent loop was restarted mid-way (a second attempt)
    "scheduler_missed_heartbeats": 40,
    "scheduler_accept_timeout": timedelta(seconds=20),
}
# the sidecar's own timers, shortened so the test waits for conditions, not for defaults
SIDECAR_TIMERS: dict[str, Any] = {
    "heartbeat_interval": 0.3,
    "reconnect_wait": 0.05,
    "reconnect_wait_max": 1.0,
    "inbox_ack_wait": 5.0,
    "inbox_fetch_timeout": 0.2,
    "progress_interval": 0.1,
    "kill_grace": 0.5,
    "git_timeout": 60.0,
    "http_timeout": 20.0,
}


def scheduler_settings(nats_server: NatsServer) -> dict[str, Any]:
    """What the scheduler needs to answer real sidecars' NATS logins (auth callout)."""
    return SCHEDULER_TIMERS | {"scheduler_nats_issuer_seed": nats_server.auth.issuer_seed}


def git(*args: str, cwd: Path) -> str:
    env = os.environ | {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    done = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)
    return done.stdout.decode()


def origin(tmp: Path, files: dict[str, str], name: str = "origin") -> Path:
    """A bare repo `<name>.git` whose `main` holds `files`: the tasks' remote."""
    bare = tmp / f"{name}.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare), cwd=tmp)
    seed = tmp / f"{name}-seed"
    git("init", "--quiet", "--initial-branch=main", str(seed), cwd=tmp)
    for name, text in files.items():
        (seed / name).write_text(text)
    git("add", "-A", cwd=seed)
    git("commit", "--quiet", "-m", "first", cwd=seed)
    git("push", "--quiet", str(bare), "main", cwd=seed)
    return bare


async def register(
    scheduler: str, admin_token: str, name: str, repos: list[str] | None = None
) -> dict[str, Any]:
    """`agentcom agent add NAME [--repo URL ...]`: the scheduler's answer (id, token, NATS
    login). An agent with repos is offered only those repos' tasks."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    body: dict[str, Any] = {"name": name, "repos": repos or []}
    async with httpx.AsyncClient(headers=headers, timeout=10) as http:
        made = await http.post(f"{scheduler}/api/agents", json=body)
    assert made.status_code == 201, made.text
    return made.json()


@contextmanager
def sidecar(made: dict[str, Any], nats_url: str, home: Path, **extra: Any) -> Generator[Path]:
    """Run the real sidecar of agent `made` until the block ends; yields its log file."""
    home.mkdir(parents=True, exist_ok=True)
    body: dict[str, Any] = {
        "agent_id": made["id"],
        "token": made["token"],
        "nats_url": nats_url,
        "nats_user": made["nats_user"],
        "nats_password": made["nats_password"],
        "hub_urls": {},
        "state_dir": str(home / "state"),
        "workspaces_dir": str(home / "workspaces"),
    }
    config = home / "agent.json"
    config.write_text(json.dumps(body | SIDECAR_TIMERS | extra))
    config.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCOM_")}
    process = ChildProcess(home / "sidecar.log", stop_timeout=20)
    process.spawn([sys.executable, "-m", "agentcom_sidecar", "run", "--config", str(config)], env)
    try:
        yield home / "sidecar.log"
    finally:
        process.stop()
