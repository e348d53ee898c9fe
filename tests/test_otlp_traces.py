"""One trace per task, received by OTLP from real processes: the queue, the scheduler and the
llm-registry run as processes and a real sidecar (`agentcom sidecar run`) runs the agent loop
against a fake model upstream through the registry's gateway, each with
`OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a small real OTLP/HTTP receiver
(tests/servers/otlp_receiver.py). One task submitted: its spans from all four processes form
one trace under the queue's root, each span's parent in it.
"""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentcom_common import task_traces
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import NatsServer, ServiceProcess, eventually, free_port
from fake_llm import ScriptedLLM
from otlp_receiver import OtlpReceiver, ReceivedSpan

SERVICES = ("queue", "scheduler", "llm-registry")
# the SDK's batch span processor exports every 5 s by default; a test waits for the spans
OTEL = {"OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_METRIC_EXPORT_INTERVAL": "500"}


@dataclass
class Stack:
    services: dict[str, ServiceProcess]
    receiver: OtlpReceiver
    headers: dict[str, str]

    def url(self, name: str) -> str:
        return self.services[name].url


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    made = OtlpReceiver()
    await made.start()
    try:
        yield made
    finally:
        await made.stop()


@pytest.fixture
async def stack(
    nats_server: NatsServer,
    db_url: str,
    admin_token: str,
    receiver: OtlpReceiver,
    tmp_path: Path,
) -> AsyncIterator[Stack]:
    offset = free_port() - CommonSettings().port("queue")
    env = OTEL | {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "AGENTCOM_ADMIN_TOKEN": admin_token,
        "AGENTCOM_SCHEDULER_NATS_ISSUER_SEED": nats_server.auth.issuer_seed,
        "AGENTCOM_SCHEDULER_SWEEP_INTERVAL": "100ms",
        "AGENTCOM_LLM_LEDGER_DIR": str(tmp_path / "ledger"),
        "AGENTCOM_LLM_LEDGER_FLUSH_INTERVAL": "50ms",
        "AGENTCOM_HOME": str(tmp_path / "home"),
    }
    services = {
        name: ServiceProcess(name, nats_server.url, db_url, tmp_path / f"{name}.log", env, offset)
        for name in SERVICES
    }
    try:
        for process in services.values():  # the queue first: it migrates the auth schema
            await asyncio.to_thread(process.start, 120)
        yield Stack(services, receiver, {"Authorization": f"Bearer {admin_token}"})
    finally:
        for process in services.values():
            process.stop()


def _tree(spans: list[ReceivedSpan]) -> str:
    """The received spans, for a failure message."""
    return "\n".join(
        f"{s.service} {s.name!r} {s.span_id} <- {s.parent_id or 'root'} {s.trace_id}" for s in spans
    )


@pytest.mark.timeout(300)  # three service processes and a sidecar start
async def test_one_task_is_one_trace_across_queue_scheduler_sidecar_and_gateway(
    stack: Stack, sidecars: Any, repos: Any, nats_server: NatsServer, tmp_path: Path
) -> None:
    origin = repos.origin(tmp_path, {"README.md": "hello\n"})
    model = ScriptedLLM("ollama", models=["qwen3:8b"], final="Wrote hello.txt.")
    model.script = [
        {"name": "write_file", "arguments": {"path": "hello.txt", "content": "hi\n"}},
    ]
    await model.start()
    try:
        async with httpx.AsyncClient(headers=stack.headers, timeout=20) as http:
            endpoint = {"id": "gpu1", "provider": "ollama", "base_url": model.url}
            added = await http.post(
                f"{stack.url('llm-registry')}/api/llm/endpoints",
                json=endpoint | {"classes": ["local"], "models": model.models},
            )
            assert added.status_code == 201, added.text
            checked = await http.post(f"{stack.url('llm-registry')}/api/llm/endpoints/gpu1/check")
            assert checked.json()["health"] == "healthy", checked.text

            made = (
                await http.post(f"{stack.url('scheduler')}/api/agents", json={"name": "tracer"})
            ).json()
            config = sidecars.config(
                made,
                nats_server.address,
                repos=[{"url": str(origin)}],
                gateway_url=stack.url("llm-registry"),
                max_verification_retries=0,
            )
            sidecars.start(
                "tracer", config, OTEL | {"OTEL_EXPORTER_OTLP_ENDPOINT": stack.receiver.url}
            )

            async def idle() -> None:
                agent = (await http.get(f"{stack.url('scheduler')}/api/agents/tracer")).json()
                assert agent["state"] == "idle", (agent, sidecars.log("tracer"))

            await eventually(idle, timeout=60)
            submitted = await http.post(
                f"{stack.url('queue')}/api/tasks",
                json={
                    "description": "Write hello.txt",
                    "repo": str(origin),
                    "complexity_tier": "standard",
                    "verification_steps": [{"type": "file_exists", "path": "hello.txt"}],
                },
            )
            assert submitted.status_code == 201, submitted.text
            task_id = submitted.json()["id"]

            async def completed() -> None:
                task = (await http.get(f"{stack.url('queue')}/api/tasks/{task_id}")).json()
                assert task["state"] == "completed", (task, sidecars.log("tracer"))

            await eventually(completed, timeout=120)
    finally:
        await model.stop()
    assert len(model.chats) == 2, model.chats  # the tool call's turn and the final answer

    trace_id = task_traces.trace_id(task_id)
    by_service = {
        "agentcom-queue": {"task submit"},
        "agentcom-scheduler": {"scheduler assign"},
        "agentcom-sidecar": {"sidecar run", "execute_tool write_file", "chat standard"},
        "agentcom-llm-registry": {"POST /api/chat"},
    }

    async def whole() -> list[ReceivedSpan]:
        spans = stack.receiver.trace(trace_id)
        got = {service: {s.name for s in spans if s.service == service} for service in by_service}
        senders = {s.service for s in stack.receiver.spans}
        assert all(by_service[k] <= got[k] for k in by_service), (senders, _tree(spans))
        return spans

    spans = await eventually(whole, timeout=30)

    # one server span per HTTP request, named by its route (FastAPI's own): a second
    # middleware span beside it doubled every request and named it by the raw path
    def queue_spans(name: str) -> list[ReceivedSpan]:
        return [s for s in stack.receiver.spans if (s.service, s.name) == ("agentcom-queue", name)]

    async def served_polls() -> None:
        assert queue_spans("GET /api/tasks/{task_id}"), _tree(stack.receiver.spans)

    await eventually(served_polls, timeout=30)
    assert [s.name for s in stack.receiver.spans if task_id in s.name] == []
    assert [s.kind for s in queue_spans("POST /api/tasks")] == ["SPAN_KIND_SERVER"]

    # one trace: every span of the task is in it, one root (the queue's), every parent there
    tagged = [s for s in stack.receiver.spans if s.attributes.get("agentcom.task.id") == task_id]
    assert {s.trace_id for s in tagged} == {trace_id}, _tree(tagged)
    roots = [s for s in spans if not s.parent_id]
    assert [(r.service, r.name) for r in roots] == [("agentcom-queue", "task submit")], _tree(spans)
    ids = {s.span_id: s for s in spans}
    assert all(s.parent_id in ids for s in spans if s.parent_id), _tree(spans)

    # and the parentage says who caused what: each model call's gateway span is under the
    # sidecar's chat span, which is under its run, as is the tool call
    def named(name: str) -> list[ReceivedSpan]:
        return [s for s in spans if s.name == name]

    (run,) = named("sidecar run")
    assert run.attributes["agentcom.agent.id"] == "tracer"
    gateway = named("POST /api/chat")
    assert len(gateway) == 2, _tree(spans)  # the two model turns
    for served in gateway:
        chat = ids[served.parent_id]
        assert (chat.service, chat.name) == ("agentcom-sidecar", "chat standard")  # by tier
        assert chat.attributes["gen_ai.response.model"] == "qwen3:8b"  # the gateway's pick
        assert chat.parent_id == run.span_id
    assert [s.parent_id for s in named("execute_tool write_file")] == [run.span_id]
    assert run.parent_id == roots[0].span_id
    assert [s.parent_id for s in named("scheduler assign")] == [roots[0].span_id]
