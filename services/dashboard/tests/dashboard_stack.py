"""Test helpers: the dashboard next to a real queue and scheduler, each on its own HTTP port.

Browsers, WebSocket clients and the dashboard's own calls to the queue all need real sockets,
so every app runs under uvicorn in this event loop (lifespans and all).
"""

import asyncio
import contextlib
import json
import subprocess
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from nats.aio.client import Client
from nats.aio.msg import Msg

from agentcom_common import auth, micro
from agentcom_common.contracts.task import Claimed, ClaimTask, Reported, ReportTask, TaskView
from agentcom_common.service import own_of
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import eventually, free_port
from agentcom_dashboard.app import create_app as dashboard_app
from agentcom_dashboard.live import Live
from agentcom_dashboard.settings import DashboardSettings
from agentcom_queue.app import create_app as queue_app
from agentcom_queue.settings import QueueSettings
from agentcom_scheduler.app import create_app as scheduler_app
from agentcom_scheduler.settings import SchedulerSettings
from up_stack import cli, cli_env

Json = dict[str, Any]


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncGenerator[str]:
    """Run `app` under uvicorn on a free port until the block ends; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, lifespan="on", ws="auto"
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # pytest owns signals
    task = asyncio.create_task(server.serve())

    async def started() -> None:
        if task.done():
            task.result()  # raises what stopped it
            raise RuntimeError("uvicorn stopped before it started; see the log")
        assert server.started

    await eventually(started, timeout=60)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=30)


@dataclass
class Stack:
    dashboard: str
    queue: str
    scheduler: str
    app: FastAPI
    admin_token: str
    viewer_token: str
    alerts_file: Path
    settings: DashboardSettings

    @property
    def live(self) -> Live:
        return own_of(self.app, Live)

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return httpx.AsyncClient(headers=headers, timeout=10)

    async def submit(self, **fields: Any) -> Json:
        async with self.client() as http:
            body = {"description": "do the thing"} | fields
            response = await http.post(f"{self.queue}/api/tasks", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    async def task(self, task_id: str) -> Json:
        async with self.client() as http:
            return (await http.get(f"{self.queue}/api/tasks/{task_id}")).json()

    async def snapshots_after(self, count: int) -> None:
        """Wait until at least `count` more metrics snapshots have been taken."""
        target = self.live.history.taken + count

        async def taken() -> None:
            assert self.live.history.taken >= target

        await eventually(taken, timeout=20)


async def claim(nc: Client, agent: str = "a1") -> TaskView:
    task = (await micro.call(nc, "queue", "claim", ClaimTask(agent_id=agent), Claimed)).task
    assert task is not None
    return task


async def report(
    nc: Client, task: TaskView, outcome: Reported, agent: str = "a1", **fields: Any
) -> TaskView:
    body = ReportTask(
        task_id=task.id, agent_id=agent, generation=task.generation, outcome=outcome, **fields
    )
    return await micro.call(nc, "queue", "report", body, TaskView, timeout=10)


async def dead_letter(stack: Stack, nc: Client, description: str = "doomed") -> Json:
    task = await stack.submit(description=description, max_retries=0)
    await report(nc, await claim(nc), "failed", error="compiler exploded")
    assert (await stack.task(task["id"]))["state"] == "dead_letter"
    return task


def dashboard_settings(settings: CommonSettings, tmp_path: Path, **extra: Any) -> DashboardSettings:
    return DashboardSettings.model_validate(
        settings.model_dump()
        | {
            "dashboard_snapshot_interval": timedelta(milliseconds=100),
            # leads 0.9 s after start; a shorter lease lost the lead (and its pushes) on a busy CI
            "dashboard_leader_interval": timedelta(milliseconds=300),
            "dashboard_metrics_window": timedelta(minutes=5),
            "dashboard_alerts_file": tmp_path / "alerts.env",
            "dashboard_source_timeout": timedelta(seconds=5),
            "dashboard_push_allow_http": True,  # the test push service speaks plain http
            # nothing listens on the discard port: these services "do not exist yet"
            "dashboard_llm_url": "http://127.0.0.1:9",
            "dashboard_hub_url": "http://127.0.0.1:9",
        }
        | extra
    )


@pytest.fixture
def dashboard_extra() -> dict[str, Any]:
    """Override in a test module to change the dashboard's settings."""
    return {}


@pytest.fixture
def scheduler_extra() -> dict[str, Any]:
    """Override in a test module to change the scheduler's settings (a module with real
    sidecars gives it the NATS issuer seed, so it answers their logins)."""
    return {}


@dataclass
class Backend:
    """The queue and scheduler a dashboard reads, and the settings a dashboard runs with."""

    queue: str
    scheduler: str
    admin_token: str
    viewer_token: str
    settings: DashboardSettings

    @contextlib.asynccontextmanager
    async def dashboard(self) -> AsyncGenerator[Stack]:
        """Run one dashboard replica until the block ends, yielding once it leads (judges
        and pushes): the first of a test leads, a later one leads once the others are gone."""
        app = dashboard_app(self.settings)
        async with serve(app) as url:
            made = Stack(
                url,
                self.queue,
                self.scheduler,
                app,
                self.admin_token,
                self.viewer_token,
                self.settings.alerts_file,
                self.settings,
            )
            await eventually(lambda: leading(made.live), timeout=20)
            yield made


@pytest.fixture
async def backend(
    settings: CommonSettings,
    admin_token: str,
    tmp_path: Path,
    engine: Any,
    dashboard_extra: dict[str, Any],
    scheduler_extra: dict[str, Any],
) -> AsyncIterator[Backend]:
    viewer = (await auth.issue(engine, auth.Role.VIEWER, "test viewer")).token
    queue_settings = QueueSettings.model_validate(
        settings.model_dump() | {"queue_retry_backoff": timedelta(0)}
    )
    scheduler = scheduler_app(
        SchedulerSettings.model_validate(settings.model_dump() | scheduler_extra)
    )
    async with serve(queue_app(queue_settings)) as queue, serve(scheduler) as sched:
        own = dashboard_settings(
            settings,
            tmp_path,
            dashboard_queue_url=queue,
            dashboard_scheduler_url=sched,
            **dashboard_extra,
        )
        yield Backend(queue, sched, admin_token, viewer, own)


@pytest.fixture
async def stack(backend: Backend) -> AsyncIterator[Stack]:
    async with backend.dashboard() as made:
        yield made


async def leading(live: Live) -> None:
    assert live.is_leader


class AlertLog:
    def __init__(self) -> None:
        self.events: list[tuple[str, Json]] = []

    async def on_msg(self, msg: Msg) -> None:
        self.events.append((msg.subject.rsplit(".", 1)[-1], json.loads(msg.data)))

    def of(self, rule: str, kind: str | None = None) -> list[Json]:
        return [e for k, e in self.events if e["rule_id"] == rule and kind in (None, k)]

    async def wait_for(self, rule: str, kind: str, count: int = 1) -> Json:
        async def seen() -> Json:
            found = self.of(rule, kind)
            assert len(found) >= count, (rule, kind, self.events)
            return found[count - 1]

        return await eventually(seen, timeout=20)


@pytest.fixture
async def alerts(nc: Client) -> AsyncIterator[AlertLog]:
    log = AlertLog()
    sub = await nc.subscribe("agentcom.evt.alert.>", cb=log.on_msg)  # pyright: ignore[reportUnknownMemberType]
    yield log
    await sub.unsubscribe()


def set_thresholds(stack: Stack, **values: object) -> None:
    lines = [f"AGENTCOM_DASHBOARD_ALERT_{k.upper()}={v}" for k, v in values.items()]
    stack.alerts_file.write_text("\n".join(lines) + "\n")


async def backup(settings: CommonSettings, home: Path) -> subprocess.CompletedProcess[str]:
    """`agentcom backup` as an operator runs it, against the stack's own database."""
    assert settings.database_url is not None
    env = cli_env(home, AGENTCOM_DATABASE_URL=settings.database_url.get_secret_value())
    return await asyncio.to_thread(cli, env, "backup", "--json")  # the dashboard runs meanwhile
