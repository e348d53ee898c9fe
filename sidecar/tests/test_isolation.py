"""Where the agent loop's commands cannot be isolated, the sidecar says so (heartbeat, status,
agent view), tells the model the truth, and refuses LLM tasks when isolation is required.

A machine without user namespaces is made real by a PATH without `unshare`: the sidecar's
probe then fails exactly as on such a kernel."""

import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import fake_ollama
from agentcom_common.testing import eventually
from agentcom_sidecar.agentic.sandbox import namespaces_available


@pytest.fixture
def no_namespaces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every program of PATH but `unshare`."""
    tools = tmp_path / "bin-without-unshare"
    tools.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        for program in Path(folder).glob("*") if Path(folder).is_dir() else ():
            linked = tools / program.name
            if program.name != "unshare" and not linked.exists() and os.access(program, os.X_OK):
                linked.symlink_to(program)
    monkeypatch.setenv("PATH", str(tools))
    namespaces_available.cache_clear()  # probed once per process: probe this machine again
    yield
    monkeypatch.undo()
    namespaces_available.cache_clear()


@pytest.fixture
async def model() -> AsyncIterator[fake_ollama.FakeModel]:
    async with fake_ollama.serve() as fake:
        yield fake


async def _beat(listen_to: list[dict[str, Any]]) -> dict[str, Any]:
    async def beaten() -> dict[str, Any]:
        beats = [r for r in listen_to if r["kind"] == "heartbeat"]
        assert beats
        return beats[-1]

    return await eventually(beaten, timeout=20)


async def test_required_isolation_that_the_machine_cannot_make_refuses_llm_tasks(
    hub: Any,
    run_sidecar: Any,
    listen: Any,
    no_namespaces: None,
    monkeypatch: pytest.MonkeyPatch,
    model: fake_ollama.FakeModel,
) -> None:
    monkeypatch.setenv("AGENTCOM_AGENTIC_ISOLATION", "namespaces")
    # shell commands allowed: the agent can take other work, so it is not blocked, and the
    # LLM task reaches it and is refused (with nothing runnable at all it would be blocked)
    config = await hub.agent("strict", gateway_url=model.url, allow_hub_commands=True)
    heard = await listen("strict")
    async with run_sidecar(config):
        beat = await _beat(heard)
        made = await hub.submit(description="Write the answer", complexity_tier="standard")

        async def refused() -> None:
            history = await hub.history(made["id"])
            assert [h["to_state"] for h in history] == ["queued", "assigned", "queued"], history
            assert "cannot make user namespaces" in history[-1]["reason"]

        await eventually(refused, timeout=30)
        task = await hub.task(made["id"])
        status = json.loads(config.status_path.read_text())
        agent = (await hub.scheduler.get("/api/agents/strict")).json()

    rejected = next(r for r in heard if r["kind"] == "rejected")
    assert rejected["code"] == "isolation_unavailable"
    assert "AGENTCOM_AGENTIC_ISOLATION=namespaces" in rejected["error"]
    assert task["state"] == "queued"  # for an agent that can isolate it: no retry used
    assert task["retry_count"] == 0
    assert model.requests == []  # no model turn, no command: nothing ran unisolated
    assert beat["isolation"] == "unavailable"
    assert status["isolation"] == "unavailable"
    assert agent["resources"]["isolation"] == "unavailable"


async def test_an_agent_loop_without_namespaces_says_so_and_the_prompt_tells_the_truth(
    hub: Any,
    run_sidecar: Any,
    listen: Any,
    origin: Path,
    no_namespaces: None,
    model: fake_ollama.FakeModel,
) -> None:
    config = await hub.agent("loose", repos=[{"url": str(origin)}], gateway_url=model.url)
    heard = await listen("loose")
    model.play(
        fake_ollama.reply(tool_calls=[fake_ollama.call("run_command", command="echo hi")]),
        fake_ollama.reply(content="Ran it."),
    )
    async with run_sidecar(config):
        beat = await _beat(heard)
        made = await hub.submit(description="Say hi", repo=str(origin), complexity_tier="standard")

        async def done() -> dict[str, Any]:
            task = await hub.task(made["id"])
            assert task["state"] == "completed", task
            return task

        task = await eventually(done, timeout=60)
        status = json.loads(config.status_path.read_text())

    system = model.requests[0]["messages"][0]["content"]
    assert "no network access" not in system
    assert "read-only" not in system
    assert "no sandbox" in system
    assert "can reach the network" in system
    assert task["result"]["details"]["isolation"] == "none"
    assert beat["isolation"] == "none"
    assert status["isolation"] == "none"
