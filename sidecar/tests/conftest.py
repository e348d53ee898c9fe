"""Sidecar tests run against the real queue and scheduler, a real NATS, real git, and a small
real HTTP server that speaks the GitHub pulls API."""

import asyncio
import contextlib
import json
import os
import sys
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from agentcom_common import subjects
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import ChildProcess, NatsServer, running
from agentcom_queue.app import create_app as queue_app
from agentcom_scheduler.app import create_app as scheduler_app
from agentcom_scheduler.settings import SchedulerSettings
from agentcom_sidecar import config as sidecar_config
from agentcom_sidecar.runner import Sidecar
from real_sidecars import make_origin

# the pre-publication scan's corpus is data a task copies into a workspace, not tests to run
collect_ignore_glob = ["corpus/*"]

# real timers, only shorter: a sidecar restarted by a test comes back well inside them
TIMERS = {
    "scheduler_sweep_interval": timedelta(milliseconds=100),
    "scheduler_heartbeat_interval": timedelta(seconds=1),
    "scheduler_missed_heartbeats": 15,
    "scheduler_accept_timeout": timedelta(seconds=20),
    # past a deadline the sidecar's own report is awaited this long before the hub takes over
    "scheduler_deadline_grace": timedelta(seconds=10),
}
FAST = {
    "heartbeat_interval": 0.5,
    "reconnect_wait": 0.05,
    "reconnect_wait_max": 1.0,
    "inbox_ack_wait": 2.0,
    "inbox_fetch_timeout": 0.2,
    "progress_interval": 0.05,
    "kill_grace": 0.5,
    "git_timeout": 60.0,
    "http_timeout": 10.0,
}


@dataclass
class Hub:
    queue: httpx.AsyncClient
    scheduler: httpx.AsyncClient
    nats_url: str
    root: Path

    async def submit(self, **body: Any) -> dict[str, Any]:
        made = await self.queue.post("/api/tasks", json={"description": "x"} | body)
        assert made.status_code == 201, made.text
        return made.json()

    async def task(self, task_id: str) -> dict[str, Any]:
        return (await self.queue.get(f"/api/tasks/{task_id}")).json()

    async def history(self, task_id: str) -> list[dict[str, Any]]:
        return (await self.queue.get(f"/api/tasks/{task_id}/history")).json()

    async def agent(self, name: str, **extra: Any) -> sidecar_config.SidecarConfig:
        """Register `name` with the scheduler and write its sidecar config (0600)."""
        made = await self.scheduler.post("/api/agents", json={"name": name})
        assert made.status_code == 201, made.text
        login = made.json()
        body = (
            {
                "agent_id": name,
                "token": login["token"],
                "nats_url": self.nats_url,  # no credentials in it: the agent logs in as itself
                "nats_user": login["nats_user"],
                "nats_password": login["nats_password"],
            }
            | FAST
            | extra
        )
        home = self.root / name
        home.mkdir(parents=True, exist_ok=True)
        path = home / "sidecar.json"
        path.write_text(json.dumps(body))
        path.chmod(0o600)
        return sidecar_config.load(path)


@pytest.fixture
def hub_timers() -> dict[str, timedelta | int]:
    """The scheduler's timers for `hub`; a test module about something other than timing
    overrides this with longer ones, so a loaded machine cannot make its agents look silent."""
    return TIMERS


@pytest.fixture
async def hub(
    settings: CommonSettings,
    admin_token: str,
    tmp_path: Path,
    nats_server: NatsServer,
    hub_timers: dict[str, timedelta | int],
) -> AsyncIterator[Hub]:
    fast = SchedulerSettings.model_validate(
        settings.model_dump()
        | hub_timers
        # the scheduler answers the agents' NATS logins (auth callout) with this issuer
        | {"scheduler_nats_issuer_seed": nats_server.auth.issuer_seed}
    )
    async with (
        running(queue_app(settings), "http://queue") as queue,
        running(scheduler_app(fast), "http://scheduler") as scheduler,
    ):
        for client in (queue, scheduler):
            client.headers["Authorization"] = f"Bearer {admin_token}"
        yield Hub(queue, scheduler, nats_server.address, tmp_path / "agents")


@contextlib.asynccontextmanager
async def _in_process(config: sidecar_config.SidecarConfig) -> AsyncGenerator[Sidecar]:
    sidecar = Sidecar(config)
    task = asyncio.create_task(sidecar.run())
    try:
        yield sidecar
    finally:
        sidecar.stopping.set()
        await asyncio.wait_for(task, 20)


Listen = Callable[[str], Awaitable[list[dict[str, Any]]]]


@pytest.fixture
def listen(nc: Client) -> Listen:
    """`await listen(agent)`: a list that fills with every report the agent publishes."""

    async def start(agent: str) -> list[dict[str, Any]]:
        heard: list[dict[str, Any]] = []

        async def on(msg: Msg) -> None:
            heard.append(json.loads(msg.data))

        await nc.subscribe(subjects.agent_report(agent), cb=on)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
        return heard

    return start


RunSidecar = Callable[
    [sidecar_config.SidecarConfig], contextlib.AbstractAsyncContextManager[Sidecar]
]


@pytest.fixture
def run_sidecar() -> RunSidecar:
    """The sidecar in this process (for tests that need no kill -9)."""
    return _in_process


class SidecarProcess(ChildProcess):
    """`python -m agentcom_sidecar run` as a real process, to be killed with SIGKILL."""

    def __init__(
        self,
        config: sidecar_config.SidecarConfig,
        argv: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(config.path.parent / "sidecar.log", stop_timeout=20)
        self.config = config
        self.extra_env = env or {}
        self.argv = argv or [
            sys.executable,
            "-m",
            "agentcom_sidecar",
            "run",
            "--config",
            str(config.path),
        ]

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTCOM_")}
        self.spawn(self.argv, env | self.extra_env)


@pytest.fixture
def processes() -> Iterator[Callable[..., SidecarProcess]]:
    made: list[SidecarProcess] = []

    def start(
        config: sidecar_config.SidecarConfig,
        argv: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> SidecarProcess:
        process = SidecarProcess(config, argv, env)
        process.start()
        made.append(process)
        return process

    yield start
    for process in made:
        process.stop()


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """A bare repo with `main` (README.md) as the default branch: the tasks' remote."""
    return make_origin(tmp_path, {"README.md": "hello\n"})


@dataclass
class FakeGitHub:
    """GitHub's REST API, as much of it as the sidecar uses: pulls (GET list by head, POST
    create, PUT merge) and a commit's checks (GET check-runs, GET status), the same
    `check_runs` and `statuses` for every commit, in GitHub's shapes."""

    url: str = ""
    pulls: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    requests: list[tuple[str, str, str | None]] = field(
        default_factory=list[tuple[str, str, str | None]]
    )
    fail_create: int | None = None
    create_reply: object = None  # if set, the body of a 201 to POST instead of the new pull
    merges: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    check_runs: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    statuses: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])

    def checks(self, rest: list[str]) -> tuple[int, object]:
        """`commits/{sha}/check-runs` and `commits/{sha}/status` of a repo."""
        if rest[-1] == "check-runs":
            return 200, {"total_count": len(self.check_runs), "check_runs": self.check_runs}
        states = {s["state"] for s in self.statuses}
        state = next((s for s in ("failure", "error", "pending") if s in states), "success")
        if not self.statuses:
            state = "pending"  # GitHub's combined state of a commit with no status at all
        return 200, {"state": state, "statuses": self.statuses, "total_count": len(states)}

    def merge(self, number: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        pull = next((p for p in self.pulls if str(p["number"]) == number), None)
        if pull is None:
            return 404, {"message": "Not Found"}
        if pull["draft"] or pull["merged"]:
            return 405, {"message": "Pull Request is not mergeable"}
        pull["merged"] = True
        self.merges.append({"number": pull["number"]} | body)
        return 200, {"merged": True, "message": "Pull Request successfully merged"}


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub()

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            fake.requests.append(("GET", self.path, self.headers.get("Authorization")))
            path, _, query = self.path.partition("?")
            params = dict(part.split("=", 1) for part in query.split("&") if "=" in part)
            parts = path.strip("/").split("/")
            if len(parts) == 6 and parts[0] == "repos" and parts[3] == "commits":
                self._reply(*fake.checks(parts))
                return
            if len(parts) != 4 or parts[0] != "repos" or parts[3] != "pulls":
                self._reply(404, {"message": "Not Found"})
                return
            owner = parts[1]
            found = [
                p
                for p in fake.pulls
                if f"{owner}:{p['head']}"
                == params.get("head", "").replace("%3A", ":").replace("%2F", "/")
                and p["state"] == "open"
            ]
            self._reply(200, found)

        def do_POST(self) -> None:
            fake.requests.append(("POST", self.path, self.headers.get("Authorization")))
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            parts = self.path.strip("/").split("/")
            if fake.fail_create is not None:
                self._reply(fake.fail_create, {"message": "Validation Failed"})
                return
            if fake.create_reply is not None:
                self._reply(201, fake.create_reply)
                return
            number = len(fake.pulls) + 1
            pull = {
                "number": number,
                "state": "open",
                "head": body["head"],
                "base": body["base"],
                "title": body["title"],
                "body": body["body"],
                "draft": bool(body.get("draft", False)),
                "merged": False,
                "html_url": f"https://github.example/{parts[1]}/{parts[2]}/pull/{number}",
            }
            fake.pulls.append(pull)
            self._reply(201, pull)

        def do_PUT(self) -> None:
            fake.requests.append(("PUT", self.path, self.headers.get("Authorization")))
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            parts = self.path.strip("/").split("/")  # repos/o/r/pulls/<n>/merge
            self._reply(*fake.merge(parts[4] if len(parts) == 6 else "", body))

        def log_message(self, format: str, *args: object) -> None:  # noqa: ARG002  # quiet tests
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()
