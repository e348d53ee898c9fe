"""Metrics against real parts: the five services as processes, Debian's `prometheus` scraping
each one's /metrics with deploy/prometheus.yaml's jobs, tasks and model calls driven through,
then every PromQL expression of the Grafana dashboards (deploy/grafana/dashboards/*.json) asked
of Prometheus's HTTP API: each must return data.

Skipped, saying why, only where the binary is missing outside CI; `.ci/run` installs it.
"""

import asyncio
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from nats.aio.client import Client
from nats.js import JetStreamContext

from agentcom_common import micro
from agentcom_common.contracts.llm import ChatReply, ChatRequest
from agentcom_common.contracts.task import Claimed, ClaimTask, ReportTask, TaskView
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import (
    ChildProcess,
    NatsServer,
    ServiceProcess,
    eventually,
    free_port,
)
from fake_llm import FakeLLM

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = sorted((ROOT / "deploy/grafana/dashboards").glob("*.json"))
SERVICES = ("queue", "scheduler", "llm-registry", "hubfsm", "dashboard")
PROMETHEUS = shutil.which("prometheus")
BUDGET = json.dumps({state: {"tokens": 1_000_000} for state in ("resting", "executing")})

pytestmark = pytest.mark.skipif(
    PROMETHEUS is None and os.environ.get("CI") != "true",
    reason="Debian's prometheus binary is not installed (apt-get install prometheus; "
    ".ci/run installs it in CI, where this test always runs)",
)


def expressions() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every Prometheus target of every dashboard; the others (the
    trace dashboard's Jaeger queries) are not PromQL, and every target is one or the other."""
    found: list[tuple[str, str]] = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                kind = target.get("datasource", panel["datasource"])["type"]
                assert kind in ("prometheus", "jaeger"), (path.name, panel["title"], kind)
                assert ("expr" in target) == (kind == "prometheus"), (path.name, panel["title"])
                if kind == "prometheus":
                    found.append((panel["title"], target["expr"]))
    return found


@dataclass
class Stack:
    services: dict[str, ServiceProcess]
    prometheus: str
    headers: dict[str, str]


@pytest.fixture
async def stack(
    nats_server: NatsServer, db_url: str, admin_token: str, tmp_path: Path
) -> AsyncIterator[Stack]:
    assert PROMETHEUS is not None, "CI=true: the prometheus binary must be installed"
    offset = free_port() - CommonSettings().port("dashboard")
    env = {
        "AGENTCOM_ADMIN_TOKEN": admin_token,
        "AGENTCOM_METRICS_SAMPLE_INTERVAL": "200ms",
        "AGENTCOM_SCHEDULER_NATS_ISSUER_SEED": nats_server.auth.issuer_seed,
        "AGENTCOM_LLM_HUB_BUDGETS": BUDGET,
        "AGENTCOM_HUB_DATA_DIR": str(tmp_path / "hub"),
        "AGENTCOM_HOME": str(tmp_path / "home"),
    }
    services = {
        name: ServiceProcess(name, nats_server.url, db_url, tmp_path / f"{name}.log", env, offset)
        for name in SERVICES
    }
    port = free_port()
    prometheus = ChildProcess(tmp_path / "prometheus.log")
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(_scrape_config(services)))
    try:
        await asyncio.to_thread(services["queue"].start)  # migrates the shared auth schema
        for name, process in services.items():  # spawned from this thread: preexec_fn and
            if name != "queue":  # threads do not mix; then all start up at once
                process.spawn([sys.executable, "-m", process.module], process.env)
        await eventually(lambda: _all_ready(services), timeout=180)
        prometheus.spawn(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            dict(os.environ),
        )
        url = f"http://127.0.0.1:{port}"

        async def ready() -> None:
            async with httpx.AsyncClient() as client:
                try:
                    assert (await client.get(f"{url}/-/ready")).status_code == 200
                except httpx.HTTPError as exc:  # not listening yet
                    raise AssertionError(repr(exc)) from exc

        await eventually(ready, timeout=30)
        yield Stack(services, url, {"Authorization": f"Bearer {admin_token}"})
    finally:
        prometheus.stop()
        for process in services.values():
            process.stop()


async def _all_ready(services: dict[str, ServiceProcess]) -> None:
    async with httpx.AsyncClient(timeout=2) as client:
        for name, process in services.items():
            assert process.process is not None
            assert process.process.poll() is None, process.log.read_text()[-3000:]
            try:
                answer = await client.get(f"{process.url}/readyz")
            except httpx.HTTPError as exc:  # not listening yet
                raise AssertionError(f"{name}: {exc!r}") from exc
            assert answer.status_code == 200, name


def _scrape_config(services: dict[str, ServiceProcess]) -> dict[str, Any]:
    """deploy/prometheus.yaml's service jobs, pointed at this test's processes, scraped each
    second (the collector's job is left out: no sidecar runs here)."""
    deployed = yaml.safe_load((ROOT / "deploy/prometheus.yaml").read_text())
    jobs = [job for job in deployed["scrape_configs"] if job["job_name"] in services]
    assert {job["job_name"] for job in jobs} == set(SERVICES), "a service is not scraped"
    for job in jobs:
        job["static_configs"] = [{"targets": [services[job["job_name"]].url.split("//")[1]]}]
    return {"global": {"scrape_interval": "1s"}, "scrape_configs": jobs}


async def drive(stack: Stack, nc: Client, js: JetStreamContext) -> None:
    """An agent online, two tasks submitted, one run to completion, and model calls that fail
    over from a broken endpoint to a working one (paid from the hub's budget)."""
    s = stack.services
    async with httpx.AsyncClient(headers=stack.headers, timeout=10) as http:
        agent = (await http.post(f"{s['scheduler'].url}/api/agents", json={"name": "p1"})).json()
        hello = {"kind": "hello", "agent_id": agent["id"]}
        await js.publish(f"agentcom.agent.{agent['id']}.report", json.dumps(hello).encode())
        for lane in ("high", "low"):
            made = await http.post(
                f"{s['queue'].url}/api/tasks", json={"description": "t", "priority": lane}
            )
            assert made.status_code == 201, made.text
        claimed = await micro.call(nc, "queue", "claim", ClaimTask(agent_id=agent["id"]), Claimed)
        assert claimed.task is not None
        for outcome in ("accepted", "completed"):
            report = ReportTask(
                task_id=claimed.task.id,
                agent_id=agent["id"],
                generation=claimed.task.generation,
                outcome=outcome,
            )
            await micro.call(nc, "queue", "report", report, TaskView)
        bad, good = FakeLLM("bad", status=500), FakeLLM("good", models=["claude-x"])
        await bad.start()
        await good.start()
        try:
            for endpoint, provider, url, extra in (
                ("bad", "ollama", bad.url, {"classes": ["local"]}),
                ("good", "anthropic", good.url, {"classes": ["claude"], "api_key": "sk-ant"}),
            ):
                body = {"id": endpoint, "provider": provider, "base_url": url} | extra
                made = await http.post(f"{s['llm-registry'].url}/api/llm/endpoints", json=body)
                assert made.status_code == 201, made.text
                await http.post(f"{s['llm-registry'].url}/api/llm/endpoints/{endpoint}/check")
            hi = [{"role": "user", "content": "hi"}]
            for _ in range(2):
                reply = await micro.call(
                    nc, "llm", "chat", ChatRequest(messages=hi, model="standard"), ChatReply
                )
                assert reply.endpoint_id == "good"
        finally:
            await bad.stop()
            await good.stop()


@pytest.mark.timeout(300)  # five service processes start (about 10 s alone; more when loaded)
async def test_every_dashboard_query_returns_data_from_prometheus(
    stack: Stack, nc: Client, js: JetStreamContext
) -> None:
    queries = expressions()
    assert len(queries) >= 20, [path.name for path in DASHBOARDS]
    await drive(stack, nc, js)
    empty: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=stack.prometheus, timeout=10) as prom:

        async def answered() -> None:
            empty.clear()
            for title, expr in queries:
                got = (await prom.get("/api/v1/query", params={"query": expr})).json()
                assert got["status"] == "success", (title, got)
                if not got["data"]["result"]:
                    empty[title] = expr
            assert not empty, empty

        await eventually(answered, timeout=60)
        targets = (await prom.get("/api/v1/targets")).json()["data"]["activeTargets"]
    assert {t["labels"]["job"] for t in targets if t["health"] == "up"} == set(SERVICES)
