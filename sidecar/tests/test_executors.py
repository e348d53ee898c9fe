"""The executor interface as an LLM executor will use it, and one task at a time per agent."""

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext

from agentcom_common import subjects
from agentcom_common.contracts.agent import Assign, ToolCallReport
from agentcom_common.messaging import publish
from agentcom_common.testing import eventually, task_view
from agentcom_sidecar.config import SidecarConfig
from agentcom_sidecar.executors import registry
from agentcom_sidecar.executors.base import ExecutionContext, ExecutionResult
from agentcom_sidecar.journal import Journal


class ScriptedExecutor:
    """Stands in for the agent loop: one tool call per attempt, fixes what the feedback names."""

    name = "ollama"

    def __init__(self) -> None:
        self.feedback: list[str | None] = []

    async def run(self, ctx: ExecutionContext) -> ExecutionResult:
        self.feedback.append(ctx.feedback)
        assert ctx.emit is not None
        report = ToolCallReport(
            kind="tool_call",
            agent_id=ctx.agent_id,
            task_id=ctx.task.id,
            generation=ctx.generation,
            seq=ctx.attempt,
            tool="write_file",
            arguments="answer.txt",
            ok=True,
            duration_ms=1.0,
        )
        await ctx.emit(report)
        await ctx.emit(report.model_copy(update={"task_id": "task-00000000000000ff"}))
        if ctx.feedback and "answer.txt" in ctx.feedback:
            await asyncio.to_thread((ctx.workspace / "answer.txt").write_text, "42")
        return ExecutionResult(True, "finished", "wrote the answer", tokens_in=10, tokens_out=5)


@pytest.fixture
def scripted() -> Iterator[ScriptedExecutor]:
    executor = ScriptedExecutor()

    def build(_config: SidecarConfig, _hooks: registry.Hooks) -> ScriptedExecutor:
        return executor

    registry.register("ollama", build)
    yield executor
    registry.unregister("ollama")


async def test_an_llm_executor_gets_feedback_emits_tool_calls_and_costs_add_up(
    hub: Any, run_sidecar: Any, scripted: ScriptedExecutor, listen: Any
) -> None:
    config: SidecarConfig = await hub.agent("thinker", max_verification_retries=1)
    heard = await listen("thinker")
    async with run_sidecar(config):
        made = await hub.submit(
            description="answer", verification_steps=[{"type": "file_exists", "path": "answer.txt"}]
        )

        async def done() -> dict[str, Any]:
            task = await hub.task(made["id"])
            assert task["state"] == "completed", task
            return task

        task = await eventually(done, timeout=30)

    assert scripted.feedback[0] is None
    assert "file_exists answer.txt: failed" in (scripted.feedback[1] or "")
    assert (task["result"]["tokens_in"], task["result"]["tokens_out"]) == (20, 10)
    calls = [r for r in heard if r["kind"] == "tool_call"]
    assert [(c["task_id"], c["seq"]) for c in calls] == [(made["id"], 1), (made["id"], 2)]


async def test_an_assignment_while_busy_is_rejected_and_the_first_task_finishes(
    hub: Any, run_sidecar: Any, js: JetStreamContext, tmp_path: Path
) -> None:
    config: SidecarConfig = await hub.agent("busy", allow_hub_commands=True)
    go = tmp_path / "go"
    wait = ["sh", "-c", f'while [ ! -e "{go}" ]; do sleep 0.05; done']
    async with run_sidecar(config) as sidecar:
        made = await hub.submit(metadata={"command": wait})

        async def working() -> None:
            assert (await hub.task(made["id"]))["state"] == "working"

        await eventually(working, timeout=30)
        extra = task_view(id="task-00000000000000aa", description="y")
        await publish(js, subjects.agent_inbox("busy"), Assign(task=extra, generation=1))

        async def rejected() -> None:
            journal = Journal(config.journal_path)
            outcomes = journal.outcomes()
            journal.close()
            assert ("task-00000000000000aa", 1, "rejected") in outcomes

        await eventually(rejected, timeout=30)
        assert sidecar.work_key == (made["id"], 1)
        go.touch()

        async def done() -> None:
            assert (await hub.task(made["id"]))["state"] == "completed"

        await eventually(done, timeout=30)


async def test_a_task_the_disk_cannot_hold_is_rejected_and_the_sidecar_keeps_serving(
    hub: Any, run_sidecar: Any, js: JetStreamContext
) -> None:
    config: SidecarConfig = await hub.agent("cramped", allow_hub_commands=True)
    config.workspaces.mkdir(parents=True, exist_ok=True)
    (config.workspaces / "scratch").write_text("a file where the scratch folder goes")
    async with run_sidecar(config) as sidecar:
        task = task_view(
            id="task-00000000000000bb", description="y", metadata={"command": ["true"]}
        )
        await publish(js, subjects.agent_inbox("cramped"), Assign(task=task, generation=1))

        async def rejected() -> None:
            journal = Journal(config.journal_path)
            outcomes = journal.outcomes()
            journal.close()
            assert ("task-00000000000000bb", 1, "rejected") in outcomes

        await eventually(rejected, timeout=30)
        assert not sidecar.stopping.is_set()


class BrokenExecutor:
    name = "claude"

    async def run(self, ctx: ExecutionContext) -> ExecutionResult:
        raise RuntimeError(f"bug while working on {ctx.task.id}")


async def test_an_executor_that_crashes_fails_its_task_and_the_sidecar_keeps_serving(
    hub: Any, run_sidecar: Any
) -> None:
    def build(_config: SidecarConfig, _hooks: registry.Hooks) -> BrokenExecutor:
        return BrokenExecutor()

    registry.register("claude", build)
    try:
        config: SidecarConfig = await hub.agent("fragile", allow_hub_commands=True)
        async with run_sidecar(config) as sidecar:
            broken = await hub.submit(metadata={"executor": "claude"}, max_retries=0)
            fine = await hub.submit(metadata={"command": ["true"]})

            async def both_done() -> None:
                assert (await hub.task(broken["id"]))["state"] == "dead_letter"
                assert (await hub.task(fine["id"]))["state"] == "completed"

            await eventually(both_done, timeout=30)
            assert not sidecar.stopping.is_set()
    finally:
        registry.unregister("claude")
    assert (await hub.task(broken["id"]))["last_error"] == "executor claude crashed: RuntimeError"


async def test_an_assignment_whose_task_is_not_a_task_view_is_refused_and_the_sidecar_serves_on(
    hub: Any, run_sidecar: Any, js: JetStreamContext, listen: Any
) -> None:
    config: SidecarConfig = await hub.agent("strict", allow_hub_commands=True)
    heard: list[dict[str, Any]] = await listen("strict")
    async with run_sidecar(config) as sidecar:
        # a task with an id and a generation but missing most of a TaskView (no state...)
        bad = {"kind": "assign", "generation": 1, "task": {"id": "task-00000000000000cc"}}
        await js.publish(subjects.agent_inbox("strict"), json.dumps(bad).encode())

        async def rejected() -> dict[str, Any]:
            said = [r for r in heard if r["kind"] == "rejected"]
            assert len(said) == 1
            return said[0]

        said = await eventually(rejected, timeout=30)
        assert said["task_id"] == "task-00000000000000cc"
        assert said["generation"] == 1
        assert said["error"].startswith("the task is not a valid TaskView: state: ")
        assert not sidecar.stopping.is_set()

        made = await hub.submit(metadata={"command": ["true"]})

        async def done() -> None:
            assert (await hub.task(made["id"]))["state"] == "completed"

        await eventually(done, timeout=30)
        journal = Journal(config.journal_path)
        outcomes = journal.outcomes()
        journal.close()
        assert outcomes.count(("task-00000000000000cc", 1, "rejected")) == 1


async def test_a_journaled_task_that_does_not_parse_is_refused_after_a_restart(
    hub: Any, run_sidecar: Any, listen: Any
) -> None:
    config: SidecarConfig = await hub.agent("older", allow_hub_commands=True)
    journal = Journal(config.journal_path)
    # what an older sidecar left: a received assignment whose body is no TaskView
    journal.receive("task-00000000000000dd", 2, {"id": "task-00000000000000dd", "state": "x"})
    journal.close()
    heard: list[dict[str, Any]] = await listen("older")
    async with run_sidecar(config) as sidecar:

        async def rejected() -> dict[str, Any]:
            said = [r for r in heard if r["kind"] == "rejected"]
            assert len(said) == 1
            return said[0]

        said = await eventually(rejected, timeout=30)
        assert (said["task_id"], said["generation"]) == ("task-00000000000000dd", 2)
        assert "not a valid TaskView: state: " in said["error"]
        assert not sidecar.stopping.is_set()
