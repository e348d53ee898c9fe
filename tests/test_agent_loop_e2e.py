"""The agent loop is the default path for an LLM task, end to end: queue + scheduler +
llm-registry (its gateway on a real port) in this process, a fake LLM upstream registered as an
llm endpoint, and a real sidecar process (`agentcom sidecar run`) whose config points
`gateway_url` at the registry. The task names no executor and no command; it has a `test_passes`
step on a real git repo with a bug. The scripted model turns (tool calls, through the gateway)
fix the bug; the task ends `completed` with the verification report, and every tool call was
published as `agentcom.evt.task.tool_call`.

Both tiers' paths: `standard` picks the `ollama` executor, routed to an Ollama endpoint;
`complex` picks the `claude` executor (`X-AgentCom-Tier: complex`), routed to an Anthropic
endpoint, the gateway translating the loop's Ollama calls to Anthropic `tool_use` and back.
The loop asks by tier, so the gateway's tier chain routes it: a trivial task to `local-small`,
a standard one past a missing `local` class to Claude, a named model first.
"""

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from nats.aio.client import Client
from nats.aio.msg import Msg

from agentcom_common.settings import CommonSettings
from agentcom_common.testing import NatsServer, eventually, free_port, running
from agentcom_llm_registry.app import create_app as registry_app
from agentcom_llm_registry.settings import LlmSettings
from agentcom_queue.app import create_app as queue_app
from agentcom_scheduler.app import create_app as scheduler_app
from agentcom_scheduler.settings import SchedulerSettings
from fake_llm import ScriptedLLM

Json = dict[str, Any]


@dataclass(frozen=True)
class Route:
    """A complexity tier, the executor it picks and the upstream the gateway sends it to."""

    tier: str
    executor: str
    provider: str
    classes: list[str]
    model: str  # what the upstream serves; the gateway picks it by tier
    chat_path: str  # where the upstream is called, in its own protocol


ROUTES = [
    Route("standard", "ollama", "ollama", ["local"], "qwen3:8b", "/api/chat"),
    Route("complex", "claude", "anthropic", ["claude"], "claude-sonnet-4.5", "/v1/messages"),
]

BUGGY = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"
TEST = (
    "import unittest\n\nfrom calc import add\n\n\n"
    "class AddTest(unittest.TestCase):\n"
    "    def test_add(self):\n"
    "        self.assertEqual(add(2, 3), 5)\n\n\n"
    'if __name__ == "__main__":\n'
    "    unittest.main()\n"
)
RUN_TESTS = [sys.executable, "-m", "unittest", "-q", "test_calc"]


def tool_results(body: Json) -> list[str]:
    """The tool observations a chat call sent upstream: Ollama `tool` messages, or Anthropic
    `tool_result` blocks."""
    found: list[str] = []
    for message in body["messages"]:
        if message["role"] == "tool":
            found.append(message["content"])
        elif isinstance(message["content"], list):
            for block in message["content"]:
                if block.get("type") == "tool_result":
                    content = block["content"]
                    found.append(content if isinstance(content, str) else content[0]["text"])
    return found


@dataclass
class Hub:
    queue: httpx.AsyncClient
    scheduler: httpx.AsyncClient
    registry_url: str
    admin_token: str


@contextlib.asynccontextmanager
async def served(settings: LlmSettings) -> AsyncGenerator[str]:
    """The llm-registry on a real socket (the sidecar process calls its gateway)."""
    port = free_port()
    config = uvicorn.Config(
        registry_app(settings), host="127.0.0.1", port=port, log_config=None, lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())

    async def started() -> None:
        assert not task.done(), "uvicorn stopped before it started"
        assert server.started

    try:
        await eventually(started, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def hub(
    settings: CommonSettings, nats_server: NatsServer, admin_token: str, tmp_path: Path
) -> AsyncIterator[Hub]:
    base = settings.model_dump()
    fast = SchedulerSettings.model_validate(
        base
        | {
            "scheduler_nats_issuer_seed": nats_server.auth.issuer_seed,
            "scheduler_sweep_interval": timedelta(milliseconds=100),
            "scheduler_heartbeat_interval": timedelta(milliseconds=300),
            "scheduler_missed_heartbeats": 10,
            "scheduler_accept_timeout": timedelta(seconds=20),
        }
    )
    llm = LlmSettings.model_validate(
        base
        | {
            "llm_health_interval": timedelta(milliseconds=200),
            "llm_ledger_flush_interval": timedelta(milliseconds=50),
            "llm_ledger_dir": str(tmp_path / "ledger"),
            "llm_request_timeout": timedelta(seconds=20),
        }
    )
    async with (
        running(queue_app(settings), "http://queue") as queue,
        running(scheduler_app(fast), "http://scheduler") as scheduler,
        served(llm) as registry_url,
    ):
        for client in (queue, scheduler):
            client.headers["Authorization"] = f"Bearer {admin_token}"
        yield Hub(queue, scheduler, registry_url, admin_token)


@pytest.fixture(params=ROUTES, ids=[r.executor for r in ROUTES])
def route(request: pytest.FixtureRequest) -> Route:
    return request.param


@pytest.fixture
async def upstream(route: Route) -> AsyncIterator[ScriptedLLM]:
    fake = ScriptedLLM(
        route.provider,
        models=[route.model],
        final="Fixed: add() subtracted instead of adding; the test passes now.",
    )
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


async def test_an_llm_task_without_executor_runs_the_agent_loop_through_the_gateway_and_completes(
    hub: Hub,
    route: Route,
    upstream: ScriptedLLM,
    sidecars: Any,
    repos: Any,
    nats_server: NatsServer,
    nc: Client,
    tmp_path: Path,
) -> None:
    origin = repos.origin(tmp_path, {"calc.py": BUGGY, "test_calc.py": TEST})
    upstream.script = [
        {"name": "run_command", "arguments": {"command": RUN_TESTS}},
        {"name": "read_file", "arguments": {"path": "calc.py"}},
        {"name": "write_file", "arguments": {"path": "calc.py", "content": FIXED}},
        {"name": "run_command", "arguments": {"command": RUN_TESTS, "timeout_s": 60}},
    ]
    async with httpx.AsyncClient(
        base_url=hub.registry_url, headers={"Authorization": f"Bearer {hub.admin_token}"}
    ) as registry:
        added = await registry.post(
            "/api/llm/endpoints",
            json={
                "id": "gpu1",
                "provider": route.provider,
                "base_url": upstream.url,
                "classes": route.classes,
                "models": [route.model],
                "api_key": "sk-test-not-a-real-key",
            },
        )
        assert added.status_code == 201, added.text
        checked = await registry.post("/api/llm/endpoints/gpu1/check")
        assert checked.json()["health"] == "healthy", checked.text

    tool_events: list[Json] = []

    async def on_tool_call(msg: Msg) -> None:
        tool_events.append(json.loads(msg.data))

    subscription = await nc.subscribe(  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
        "agentcom.evt.task.tool_call", cb=on_tool_call
    )

    made = (await hub.scheduler.post("/api/agents", json={"name": "coder"})).json()
    config = sidecars.config(
        made,
        nats_server.address,
        allow_hub_commands=True,  # for the test_passes verification command
        repos=[{"url": str(origin)}],
        gateway_url=hub.registry_url,
        max_verification_retries=0,
    )
    sidecars.start("coder", config)

    async def idle() -> None:
        agent = (await hub.scheduler.get("/api/agents/coder")).json()
        assert agent["state"] == "idle", (agent, sidecars.log("coder"))

    await eventually(idle, timeout=30)

    submitted = await hub.queue.post(
        "/api/tasks",
        json={
            "description": "Fix add() in calc.py so that test_calc passes",
            "repo": str(origin),
            "complexity_tier": route.tier,
            "verification_steps": [
                {"type": "test_passes", "command": f"{sys.executable} -m unittest -q test_calc"}
            ],
        },
    )
    assert submitted.status_code == 201, submitted.text
    task_id = submitted.json()["id"]

    async def completed() -> Json:
        task = (await hub.queue.get(f"/api/tasks/{task_id}")).json()
        assert task["state"] in ("assigned", "working", "completed"), (
            task,
            sidecars.log("coder"),
        )
        assert task["state"] == "completed", task
        return task

    task = await eventually(completed, timeout=60)
    assert task["metadata"] == {}  # no executor, no command: the tier chose the agent loop

    # the agent loop did it: five model turns through the gateway, in the upstream's protocol
    assert len(upstream.chats) == 5, upstream.chats
    assert {c["_path"] for c in upstream.chats} == {route.chat_path}
    first = upstream.chats[0]
    assert first["model"] == route.model
    offered = {t.get("function", t)["name"] for t in first["tools"]}
    assert offered >= {"run_command", "read_file", "write_file"}, offered
    assert "Fix add()" in json.dumps(first["messages"])

    def last_observation(request: int) -> Json:
        return json.loads(tool_results(upstream.chats[request])[-1])

    assert last_observation(1)["data"]["exit_code"] != 0  # the model saw the test fail first
    assert "FAILED" in last_observation(1)["data"]["stderr"]
    assert last_observation(4)["data"]["exit_code"] == 0  # and pass after its fix

    result = task["result"]
    assert result["verified"] is True, result
    report = json.dumps(result["verification"])
    assert "test_passes" in report, result
    assert result["summary"].startswith("Fixed: add() subtracted"), result  # the final answer
    assert (result["tokens_in"], result["tokens_out"]) == (50, 25)  # 5 turns, gateway-counted
    assert repos.git("show", f"{result['branch']}:calc.py", cwd=origin) == FIXED
    assert repos.git("show", "main:calc.py", cwd=origin) == BUGGY

    async def all_tool_calls_seen() -> None:
        mine = [e for e in tool_events if e.get("task_id") == task_id]
        assert [e["tool"] for e in mine] == [
            "run_command",
            "read_file",
            "write_file",
            "run_command",
        ], tool_events
        assert all(e["agent_id"] == "coder" for e in mine)
        assert all(e["ok"] for e in mine), mine

    await eventually(all_tool_calls_seen, timeout=10)
    await subscription.unsubscribe()

    async with httpx.AsyncClient(
        base_url=hub.registry_url, headers={"Authorization": f"Bearer {hub.admin_token}"}
    ) as registry:
        by_caller = (await registry.get("/api/llm/costs", params={"group_by": "caller"})).json()
        by_tier = (await registry.get("/api/llm/costs", params={"group_by": "tier"})).json()
    assert "coder" in json.dumps(by_caller), by_caller  # the gateway accounted the agent's calls
    assert [(r["key"], r["calls"]) for r in by_tier["rows"]] == [(route.tier, 5)], by_tier


async def _endpoint(registry: httpx.AsyncClient, body: Json) -> None:
    added = await registry.post("/api/llm/endpoints", json=body | {"api_key": "sk-test-fake"})
    assert added.status_code == 201, added.text
    checked = await registry.post(f"/api/llm/endpoints/{body['id']}/check")
    assert checked.json()["health"] == "healthy", checked.text


async def test_agent_loop_tasks_ask_the_gateway_by_tier_so_its_tier_chain_routes_them(
    hub: Hub, sidecars: Any, repos: Any, nats_server: NatsServer, tmp_path: Path
) -> None:
    """No endpoint serves the executor's old fixed model (`qwen3:8b`): a trivial task goes to
    the healthy `local-small` endpoint, a standard one (its chain: local, then claude) to
    Claude, and a task that names a model gets that one first."""
    origin = repos.origin(tmp_path, {"README.md": "hello\n"})
    small = ScriptedLLM("ollama", models=["llama3.2:1b", "qwen2.5:0.5b"])
    claude = ScriptedLLM("anthropic", models=["claude-sonnet-4.5"])
    for fake in (small, claude):
        await fake.start()
    try:
        async with httpx.AsyncClient(
            base_url=hub.registry_url, headers={"Authorization": f"Bearer {hub.admin_token}"}
        ) as registry:
            small_endpoint = {"provider": "ollama", "classes": ["local-small"]}
            await _endpoint(registry, {"id": "small", "base_url": small.url} | small_endpoint)
            await _endpoint(
                registry,
                {"id": "claude", "provider": "anthropic", "base_url": claude.url}
                | {"classes": ["claude"], "models": claude.models},
            )

        made = (await hub.scheduler.post("/api/agents", json={"name": "router"})).json()
        config = sidecars.config(
            made,
            nats_server.address,
            repos=[{"url": str(origin)}],
            gateway_url=hub.registry_url,
            max_verification_retries=0,
        )
        sidecars.start("router", config)

        async def run(tier: str, name: str, **extra: Any) -> Json:
            small.script = claude.script = [
                {"name": "write_file", "arguments": {"path": f"{name}.txt", "content": "ok\n"}}
            ]
            small.chats.clear()
            claude.chats.clear()
            submitted = await hub.queue.post(
                "/api/tasks",
                json={
                    "description": f"Write {name}.txt",
                    "repo": str(origin),
                    "complexity_tier": tier,
                    "verification_steps": [{"type": "file_exists", "path": f"{name}.txt"}],
                }
                | extra,
            )
            assert submitted.status_code == 201, submitted.text
            task_id = submitted.json()["id"]

            async def completed() -> Json:
                task = (await hub.queue.get(f"/api/tasks/{task_id}")).json()
                assert task["state"] == "completed", (task, sidecars.log("router"))
                return task

            return await eventually(completed, timeout=60)

        trivial = await run("trivial", "trivial")
        assert [c["model"] for c in small.chats] == ["llama3.2:1b"] * 2, small.chats
        assert claude.chats == []
        assert trivial["result"]["details"]["model"] == "llama3.2:1b"

        standard = await run("standard", "standard")
        assert small.chats == []  # local-small is not in the standard chain
        assert [c["_path"] for c in claude.chats] == ["/v1/messages"] * 2
        assert standard["result"]["details"]["model"] == "claude-sonnet-4.5"

        named = await run("standard", "named", metadata={"model": "qwen2.5:0.5b"})
        assert [c["model"] for c in small.chats] == ["qwen2.5:0.5b"] * 2, small.chats
        assert claude.chats == []
        assert named["result"]["details"]["model"] == "qwen2.5:0.5b"
    finally:
        for fake in (small, claude):
            await fake.stop()
