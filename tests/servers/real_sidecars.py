"""Real sidecars and real git for tests: the config `agentcom agent add` writes for an agent
the scheduler registered, `agentcom sidecar run` as a child process doing real tasks in real
git workspaces, and a local bare remote for them to push to. Shared by the cross-service tests
(tests/conftest.py's `sidecars` and `repos` fixtures) and the dashboard's browser tests
(services/dashboard/tests/real_sidecar.py)."""

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from agentcom_common.testing import ChildProcess

# the sidecar's own timers, shortened so a test waits for conditions, not for defaults
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
# the scheduler's timers with real sidecars: short, but a sidecar answers well within them
SCHEDULER_TIMERS: dict[str, Any] = {
    "scheduler_sweep_interval": timedelta(milliseconds=100),
    "scheduler_heartbeat_interval": timedelta(milliseconds=300),
    # 12 s of silence before an agent's task is handed back: at load 15 a starved sidecar
    # missed 3 s of heartbeats and its agent loop was restarted mid-way (a second attempt)
    "scheduler_missed_heartbeats": 40,
    "scheduler_accept_timeout": timedelta(seconds=20),
}


def git(*args: str, cwd: Path) -> str:
    env = os.environ | {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout


def make_origin(tmp: Path, files: dict[str, str], name: str = "origin") -> Path:
    """A bare repo `<name>.git` whose `main` holds `files`: the tasks' remote."""
    bare = tmp / f"{name}.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare), cwd=tmp)
    seed = tmp / ("seed" if name == "origin" else f"{name}-seed")
    git("init", "--quiet", "--initial-branch=main", str(seed), cwd=tmp)
    for path, text in files.items():
        (seed / path).parent.mkdir(parents=True, exist_ok=True)
        (seed / path).write_text(text)
    git("add", "-A", cwd=seed)
    git("commit", "--quiet", "-m", "first", cwd=seed)
    git("push", "--quiet", str(bare), "main", cwd=seed)
    return bare


async def register(
    scheduler: str, admin_token: str, name: str, repos: list[str] | None = None
) -> dict[str, Any]:
    """`agentcom agent add NAME [--repo URL ...]` against the scheduler at `scheduler`: its
    answer (id, token, NATS login). An agent with repos is offered only those repos' tasks."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    body: dict[str, Any] = {"name": name, "repos": repos or []}
    async with httpx.AsyncClient(headers=headers, timeout=10) as http:
        made = await http.post(f"{scheduler}/api/agents", json=body)
    assert made.status_code == 201, made.text
    return made.json()


def agent_config(made: dict[str, Any], nats_url: str, home: Path, **extra: Any) -> Path:
    """The config `agentcom agent add` writes for the scheduler's answer `made`, plus `extra`,
    in `home` (mode 0600; state and workspaces beside it)."""
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
    path = home / "agent.json"
    path.write_text(json.dumps(body | SIDECAR_TIMERS | extra))
    path.chmod(0o600)
    return path


def spawn(config: Path, env: dict[str, str] | None = None) -> ChildProcess:
    """`agentcom sidecar run --config CONFIG` with `env` added to this environment (less its
    `AGENTCOM_*`); its log is `sidecar.log` beside the config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCOM_")} | (env or {})
    agentcom = Path(sys.executable).with_name("agentcom")
    proc = ChildProcess(config.parent / "sidecar.log", stop_timeout=20)
    proc.spawn([str(agentcom), "sidecar", "run", "--config", str(config)], env)
    return proc


class Sidecars:
    """Sidecar processes by agent name, each with its own config, state dir and workspaces;
    SIGKILL on demand, and every one still running is stopped at the end (its log is kept
    beside its config)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: dict[str, ChildProcess] = {}

    def config(self, made: dict[str, Any], nats_address: str, **extra: Any) -> Path:
        """`agent_config` in the agent's own folder under `root`."""
        return agent_config(made, nats_address, self.root / str(made["id"]), **extra)

    def start(self, name: str, config: Path, env: dict[str, str] | None = None) -> None:
        """Run the sidecar of `config` as `name` (see `spawn`)."""
        self.procs[name] = spawn(config, env)

    def log(self, name: str) -> str:
        return (self.root / name / "sidecar.log").read_text(errors="replace")

    def running(self, name: str, task_id: str) -> tuple[int, Path] | None:
        """The process group and workspace `name`'s sidecar journaled for `task_id`'s command
        while it runs (None before it started): how a test finds a sandboxed command, which
        can leave no mark outside its workspace."""
        journal = self.root / name / "state" / "journal.sqlite3"
        if not journal.exists():
            return None
        with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as db:
            row = db.execute(
                "SELECT pgid, workspace FROM task WHERE task_id = ? AND phase = 'running'"
                " AND pgid IS NOT NULL ORDER BY generation DESC LIMIT 1",
                (task_id,),
            ).fetchone()
        return None if row is None else (int(row[0]), Path(row[1]))

    def kill(self, name: str) -> None:
        """SIGKILL: no goodbye, no outcome."""
        self.procs[name].kill()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.stop()
