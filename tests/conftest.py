"""Cross-service fixtures: real sidecar processes and a local bare git remote."""

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentcom_common.settings import CommonSettings
from agentcom_common.testing import ChildProcess, NatsServer, running
from agentcom_queue.app import create_app as queue_app
from agentcom_scheduler.app import create_app as scheduler_app
from agentcom_scheduler.settings import SchedulerSettings
from fake_github import FakeGitHub, serve as serve_github

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


def make_origin(tmp: Path, files: dict[str, str]) -> Path:
    """A bare repo whose `main` holds `files`: the tasks' remote."""
    bare = tmp / "origin.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare), cwd=tmp)
    seed = tmp / "seed"
    git("init", "--quiet", "--initial-branch=main", str(seed), cwd=tmp)
    for name, text in files.items():
        (seed / name).parent.mkdir(parents=True, exist_ok=True)
        (seed / name).write_text(text)
    git("add", "-A", cwd=seed)
    git("commit", "--quiet", "-m", "first", cwd=seed)
    git("push", "--quiet", str(bare), "main", cwd=seed)
    return bare


class Sidecars:
    """`agentcom sidecar run --config F` processes by agent name, each with its own config,
    state dir and workspaces; SIGKILL on demand, and every one still running is stopped at the
    end (its log is kept beside its config)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: dict[str, ChildProcess] = {}

    def config(self, made: dict[str, Any], nats_address: str, **extra: Any) -> Path:
        """The config `agentcom agent add` writes for the scheduler's answer `made`, plus
        `extra`; mode 0600, in the agent's own folder."""
        home = self.root / str(made["id"])
        home.mkdir(parents=True, exist_ok=True)
        body: dict[str, Any] = {
            "agent_id": made["id"],
            "token": made["token"],
            "nats_url": nats_address,
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

    def start(self, name: str, config: Path, env: dict[str, str] | None = None) -> None:
        """Run the sidecar of `config` as `name`, with `env` added to this environment (less
        its `AGENTCOM_*`)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCOM_")} | (env or {})
        agentcom = Path(sys.executable).with_name("agentcom")
        proc = self.procs[name] = ChildProcess(config.parent / "sidecar.log", stop_timeout=20)
        proc.spawn([str(agentcom), "sidecar", "run", "--config", str(config)], env)

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


@pytest.fixture
def sidecars(tmp_path: Path) -> Iterator[Sidecars]:
    made = Sidecars(tmp_path / "agents")
    try:
        yield made
    finally:
        made.stop_all()


class Repos:
    """Real git for tests: `origin(tmp, files)` makes a bare remote, `git(...)` runs git."""

    git = staticmethod(git)
    origin = staticmethod(make_origin)


@pytest.fixture
def repos() -> Repos:
    return Repos()


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    """A fake GitHub API on a real socket (tests/servers/fake_github.py)."""
    with serve_github() as fake:
        yield fake


# the scheduler's timers for tests with real sidecars: short, but a sidecar answers well within
HUB_TIMERS: dict[str, Any] = {
    "scheduler_sweep_interval": timedelta(milliseconds=100),
    "scheduler_heartbeat_interval": timedelta(milliseconds=300),
    "scheduler_missed_heartbeats": 10,
    "scheduler_accept_timeout": timedelta(seconds=20),
}


@pytest.fixture
def hub_timers() -> dict[str, Any]:
    """What a test module changes of HUB_TIMERS (override this fixture in the module)."""
    return {}


@pytest.fixture
async def hub(
    settings: CommonSettings,
    nats_server: NatsServer,
    admin_token: str,
    hub_timers: dict[str, Any],
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """The queue and the scheduler in this process (the scheduler answers the agents' NATS
    logins), as admin clients: (queue, scheduler)."""
    fast = SchedulerSettings.model_validate(
        settings.model_dump()
        | HUB_TIMERS
        | hub_timers
        | {"scheduler_nats_issuer_seed": nats_server.auth.issuer_seed}
    )
    async with (
        running(queue_app(settings), "http://queue") as queue,
        running(scheduler_app(fast), "http://scheduler") as scheduler,
    ):
        for client in (queue, scheduler):
            client.headers["Authorization"] = f"Bearer {admin_token}"
        yield queue, scheduler
