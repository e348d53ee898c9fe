"""The agent loop end to end against a real HTTP server speaking the Ollama chat protocol.

The model's turns are scripted; everything else is real: the executor, the gateway client over
HTTP, the tools in the sandbox, a git workspace, and the checks run on it afterwards (a minimal
local check runner stands in for the sidecar's verification module, which lives on its branch).
"""

import asyncio
import dataclasses
import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from agentcom_common.contracts.agent import Progress, ToolCallReport
from agentcom_common.testing import eventually, free_port, task_view
from agentcom_sidecar.agentic import executors
from agentcom_sidecar.agentic.settings import AgenticSettings
from agentcom_sidecar.executors.base import ExecutionContext, ExecutionResult
from agentcom_sidecar.namespaces import available as namespaces_available
from fake_ollama import FakeModel, call, refuse, reply

FIXED = "def add(a, b):\n    return {'sum': a + b}['sum']\n"
UNITTEST = f"{sys.executable} -m unittest -q"
TASK: dict[str, Any] = {
    "id": "task-1",
    "description": "add() in calc.py subtracts; make test_calc pass.",
    "file_hints": [{"path": "calc.py", "reason": "the bug"}],
    "success_criteria": ["test_calc passes"],
    "verification_steps": [{"type": "test_passes", "command": UNITTEST, "timeout_s": 60}],
    "complexity": {
        "tier": "standard",
        "source": "explicit",
        "inferred_tier": None,
        "confidence": 1.0,
        "reasons": [],
    },
}


async def run_checks(workspace: Path, steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Minimal stand-in for the sidecar's verification: run each step in the workspace."""
    checks: list[dict[str, Any]] = []
    for step in steps:
        if step["type"] == "file_exists":
            passed = (workspace / step["path"]).exists()
        else:
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                step["command"],
                cwd=workspace,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            passed = await asyncio.wait_for(proc.wait(), timeout=step.get("timeout_s", 60)) == 0
        checks.append({"type": step["type"], "status": "pass" if passed else "fail"})
    status = "pass" if all(c["status"] == "pass" for c in checks) else "fail"
    return {"status": status, "checks": checks}


class Reports:
    def __init__(self) -> None:
        self.items: list[Progress | ToolCallReport] = []

    async def __call__(self, report: Progress | ToolCallReport) -> None:
        self.items.append(report)

    @property
    def tool_calls(self) -> list[ToolCallReport]:
        return [r for r in self.items if isinstance(r, ToolCallReport)]


def settings_for(model: FakeModel, **overrides: Any) -> AgenticSettings:
    values: dict[str, Any] = {
        "agentic_gateway_url": model.url,
        "agentic_token": SecretStr("agent-token-123"),
        **overrides,
    }
    return AgenticSettings.model_validate(values)


def context(
    workspace: Path,
    *,
    task: Mapping[str, Any] = TASK,
    seconds: float = 60,
    emit: Reports | None = None,
) -> ExecutionContext:
    deadline = asyncio.get_running_loop().time() + seconds
    return ExecutionContext(
        task=task_view(**task),
        agent_id="gcu-test",
        generation=3,
        workspace=workspace,
        deadline=deadline,
        env={"PATH": os.environ["PATH"], "GITHUB_TOKEN": "s3cr3t"},
        emit=emit,
    )


def xml(name: str, **arguments: Any) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def running(marker: str) -> bool:
    """Whether any process on the host has `marker` in its command line."""
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker.encode() in (proc / "cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


def diff(workspace: Path) -> str:
    return subprocess.run(
        ["git", "diff", "--name-only"], cwd=workspace, capture_output=True, text=True, check=True
    ).stdout


async def test_ollama_executor_fixes_a_bug_with_native_json_and_xml_calls(
    model: FakeModel, workspace: Path
) -> None:
    before = await run_checks(workspace, TASK["verification_steps"])
    write = {"name": "write_file", "arguments": {"path": "calc.py", "content": FIXED}}
    model.play(
        reply(
            tool_calls=[call("list_directory", path="."), call("read_file", path="calc.py")],
            tokens=(100, 20),
        ),
        reply(
            content=f"The bug is the minus.\n```json\n{json.dumps(write)}\n```", tokens=(200, 40)
        ),
        reply(content=xml("run_command", command=UNITTEST.split()), tokens=(300, 10)),
        reply(content="Fixed add() in calc.py; test_calc passes.", tokens=(350, 15)),
    )
    reports = Reports()
    executor = executors.build("ollama", settings_for(model))

    result = await executor.run(context(workspace, emit=reports))
    after = await run_checks(workspace, TASK["verification_steps"])

    assert before["status"] == "fail"
    assert after["status"] == "pass"
    assert diff(workspace) == "calc.py\n"
    assert (result.ok, result.stop_reason) == (True, "finished")
    assert result.summary == "Fixed add() in calc.py; test_calc passes."
    assert (result.tokens_in, result.tokens_out, result.cost_usd) == (950, 85, 0.0)
    assert result.details["files_changed"] == ["calc.py"]
    assert result.details["iterations"] == 4
    assert result.details["isolation"] in ("namespaces", "none")
    # the protocol: model, tools, bearer token; observations fed back as structured JSON
    first = model.requests[0]
    assert first["model"] == "standard"  # asked by tier: the gateway's tier chain picks
    assert model.headers[0]["x-agentcom-tier"] == "standard"
    assert first["stream"] is False
    assert [t["function"]["name"] for t in first["tools"]] == [
        "read_file",
        "write_file",
        "list_directory",
        "run_command",
        "search_files",
    ]
    assert "calc.py: the bug" in first["messages"][0]["content"]
    assert model.headers[0]["authorization"] == "Bearer agent-token-123"
    assert model.observation(1, 1)["data"]["content"] == "def add(a, b):\n    return a - b\n"
    test_run = model.observation(3)
    assert (test_run["tool"], test_run["ok"], test_run["data"]["exit_code"]) == (
        "run_command",
        True,
        0,
    )
    # every tool call was reported, in order, summarised, with the turn's tokens on its first call
    calls = reports.tool_calls
    assert [(r.tool, r.seq, r.ok) for r in calls] == [
        ("list_directory", 0, True),
        ("read_file", 1, True),
        ("write_file", 2, True),
        ("run_command", 3, True),
    ]
    assert {(r.agent_id, r.task_id, r.generation) for r in calls} == {("gcu-test", "task-1", 3)}
    assert (calls[0].tokens_in, calls[1].tokens_in, calls[2].tokens_in) == (100, 0, 200)
    assert calls[3].result == "exit 0"
    assert json.loads(calls[2].arguments) == {"path": "calc.py", "content": FIXED}


async def test_claude_executor_asks_for_the_complex_tier_and_counts_its_cost(
    model: FakeModel, workspace: Path
) -> None:
    model.play(
        reply(content="Nothing to change.", tokens=(1_000_000, 100_000)),
        reply(content="Nothing to change.", tokens=(1_000_000, 100_000)),
    )
    executor = executors.build("claude", settings_for(model))
    named = TASK | {"metadata": {"model": "claude-sonnet-4.5"}}

    await executor.run(context(workspace))
    result = await executor.run(context(workspace, task=named))

    assert model.requests[0]["model"] == "complex"  # no model named: routed by tier
    assert model.requests[1]["model"] == "claude-sonnet-4.5"  # the task named one
    assert [h["x-agentcom-tier"] for h in model.headers] == ["complex", "complex"]
    assert result.cost_usd == pytest.approx(3.0 + 1.5)


@pytest.mark.parametrize(
    "isolation",
    [
        "none",
        pytest.param(
            "namespaces",
            marks=pytest.mark.skipif(not namespaces_available(), reason="no user namespaces"),
        ),
    ],
)
async def test_the_prompt_promises_a_sandbox_only_where_commands_run_in_one(
    model: FakeModel, workspace: Path, isolation: str
) -> None:
    model.play(reply(content="Nothing to change."))
    executor = executors.build("ollama", settings_for(model, agentic_isolation=isolation))

    result = await executor.run(context(workspace))

    system = model.requests[0]["messages"][0]["content"]
    assert result.details["isolation"] == isolation
    assert ("no network access" in system) is (isolation == "namespaces")
    assert (".git is read-only" in system) is (isolation == "namespaces")
    assert ("can reach the network" in system) is (isolation == "none")


def test_build_knows_ollama_and_claude_only() -> None:
    settings = AgenticSettings()

    assert executors.build("ollama", settings).name == "ollama"
    assert executors.build("claude", settings).name == "claude"
    with pytest.raises(ValueError, match="shell"):
        executors.build("shell", settings)


def test_iteration_limits_by_tier_are_5_10_20() -> None:
    settings = AgenticSettings()

    assert [settings.max_iterations(t) for t in ("trivial", "standard", "complex", None)] == [
        5,
        10,
        20,
        10,
    ]


async def test_max_iterations_stops_a_trivial_task_after_five_turns(
    model: FakeModel, workspace: Path
) -> None:
    model.play(
        *(reply(tool_calls=[call("read_file", path="calc.py", start_line=i)]) for i in range(1, 8))
    )
    task = {**TASK, "complexity": {**TASK["complexity"], "tier": "trivial"}}

    result = await executors.build("ollama", settings_for(model)).run(context(workspace, task=task))

    assert (result.ok, result.stop_reason) == (False, "max_iterations")
    assert len(model.requests) == 5
    assert result.details["tool_calls"] == 5
    assert "max_iterations" in result.details["remaining"][0]


async def test_repeated_identical_calls_stop_the_loop_without_running_again(
    model: FakeModel, workspace: Path
) -> None:
    same = reply(tool_calls=[call("run_command", command=["git", "status"])])
    model.play(same, same, same, reply(content="never reached"))
    reports = Reports()

    result = await executors.build("ollama", settings_for(model)).run(
        context(workspace, emit=reports)
    )

    assert result.stop_reason == "repeated_tool_call"
    assert len(model.requests) == 3
    assert len(reports.tool_calls) == 2
    assert result.details["remaining"][1].startswith("not run: run_command")


async def test_token_budget_stops_before_the_next_turn(model: FakeModel, workspace: Path) -> None:
    turn = reply(tool_calls=[call("list_directory")], tokens=(300, 100))
    model.play(turn, reply(tool_calls=[call("read_file", path="calc.py")], tokens=(300, 100)), turn)

    result = await executors.build("ollama", settings_for(model, agentic_token_budget=500)).run(
        context(workspace)
    )

    assert result.stop_reason == "token_budget"
    assert len(model.requests) == 2
    assert (result.tokens_in, result.tokens_out) == (600, 200)


async def test_deadline_cuts_off_a_model_that_does_not_answer(
    model: FakeModel, workspace: Path
) -> None:
    model.play(model.hang())

    result = await executors.build("ollama", settings_for(model)).run(
        context(workspace, seconds=0.5)
    )

    assert (result.ok, result.stop_reason) == (False, "deadline")
    assert len(model.requests) <= 1  # under heavy load the deadline may pass before the request


async def test_deadline_kills_a_command_still_running(model: FakeModel, workspace: Path) -> None:
    model.play(reply(tool_calls=[call("run_command", command=["sleep", "31.4157"], timeout_s=60)]))

    result = await executors.build("ollama", settings_for(model)).run(context(workspace, seconds=1))

    assert result.stop_reason == "deadline"
    assert result.details["remaining"][1].startswith("not run: run_command")

    async def gone() -> None:
        assert not running("31.4157")

    await eventually(gone)


async def test_budget_refusal_stops_and_keeps_the_work(model: FakeModel, workspace: Path) -> None:
    model.play(
        reply(tool_calls=[call("write_file", path="calc.py", content=FIXED)], tokens=(50, 50)),
        refuse(429, "budget_exhausted", "agent gcu-test spent its daily 2.00 USD"),
    )
    steps = [*TASK["verification_steps"], {"type": "file_exists", "path": "CHANGELOG.md"}]

    result = await executors.build("ollama", settings_for(model)).run(context(workspace))
    report = await run_checks(workspace, steps)

    assert (result.ok, result.stop_reason) == (False, "budget_exhausted")
    assert "daily 2.00 USD" in result.summary
    assert [c["status"] for c in report["checks"]] == ["pass", "fail"]
    assert result.details["partial"] is True
    assert result.details["done"] == [f"wrote calc.py ({len(FIXED)} bytes)"]
    assert "budget_exhausted" in result.summary


async def test_a_stop_with_nothing_done_says_nothing_was_changed(
    model: FakeModel, workspace: Path
) -> None:
    model.play(refuse(429, "budget_exhausted", "spent"))

    result = await executors.build("ollama", settings_for(model)).run(context(workspace))

    assert result.stop_reason == "budget_exhausted"
    assert result.summary.endswith("Nothing was changed.")


async def test_empty_replies_are_nudged_then_stop(model: FakeModel, workspace: Path) -> None:
    model.play(reply(), reply(content="<think>hmm</think>"), reply(), reply(content="late"))

    result = await executors.build("ollama", settings_for(model)).run(context(workspace))

    assert result.stop_reason == "error"
    assert len(model.requests) == 3
    assert "use the available tools" in model.requests[1]["messages"][-1]["content"]


async def test_gateway_failures_stop_with_error(model: FakeModel, workspace: Path) -> None:
    model.play(refuse(503, "no_endpoint", "no healthy model"))
    down = AgenticSettings(agentic_gateway_url=f"http://127.0.0.1:{free_port()}")

    refused = await executors.build("ollama", settings_for(model)).run(context(workspace))
    unreachable = await executors.build("ollama", down).run(context(workspace))

    assert (refused.stop_reason, unreachable.stop_reason) == ("error", "error")
    assert "503 no_endpoint" in refused.summary
    assert "unreachable" in unreachable.summary


async def test_secrets_do_not_reach_the_model_or_the_commands(
    model: FakeModel, workspace: Path
) -> None:
    model.play(reply(tool_calls=[call("run_command", command=["env"])]), reply(content="ok"))

    result: ExecutionResult = await executors.build("ollama", settings_for(model)).run(
        context(workspace)
    )

    assert result.ok
    assert "s3cr3t" not in json.dumps(model.requests)


async def test_cancelling_the_attempt_kills_the_running_command(
    model: FakeModel, workspace: Path
) -> None:
    model.play(reply(tool_calls=[call("run_command", command=["sleep", "31.4156"], timeout_s=60)]))
    executor = executors.build("ollama", settings_for(model))
    attempt = asyncio.create_task(executor.run(context(workspace)))

    async def sleeping() -> None:
        assert running("31.4156")

    await eventually(sleeping)
    attempt.cancel()
    with pytest.raises(asyncio.CancelledError):
        await attempt

    async def gone() -> None:
        assert not running("31.4156")

    await eventually(gone)


def test_every_agent_loop_setting_is_documented() -> None:
    page = (Path(__file__).resolve().parents[3] / "docs" / "configuration.md").read_text()

    missing = [n for n in AgenticSettings.model_fields if f"AGENTCOM_{n.upper()}" not in page]

    assert missing == []


async def test_a_corrective_attempt_gets_the_failed_checks_and_later_seqs(
    model: FakeModel, workspace: Path
) -> None:
    model.play(reply(tool_calls=[call("list_directory")]), reply(content="Fixed."))
    reports = Reports()
    ctx = dataclasses.replace(
        context(workspace, emit=reports), attempt=2, feedback="- test_passes: FAIL (1 failed)"
    )

    await executors.build("ollama", settings_for(model)).run(ctx)

    user = model.requests[0]["messages"][1]["content"]
    assert "previous attempt failed" in user
    assert "test_passes: FAIL (1 failed)" in user
    assert [r.seq for r in reports.tool_calls] == [100_000]


async def test_observations_sent_to_the_model_are_capped(model: FakeModel, workspace: Path) -> None:
    (workspace / "big.txt").write_text("x" * 50_000)
    model.play(reply(tool_calls=[call("read_file", path="big.txt")]), reply(content="Read it."))

    await executors.build("ollama", settings_for(model, agentic_observation_cap=1000)).run(
        context(workspace)
    )

    sent = model.tool_messages(1)[0]["content"]
    assert len(sent) < 1200
    assert json.loads(sent)["truncated"] is True


async def test_the_token_never_reaches_the_logs(
    model: FakeModel, workspace: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model.play(reply(tool_calls=[call("list_directory")]), reply(content="Done."))
    caplog.set_level(logging.DEBUG)

    await executors.build("ollama", settings_for(model)).run(context(workspace))

    assert any(r.getMessage() == "agent_loop.stopped" for r in caplog.records)
    assert all("agent-token-123" not in repr(vars(r)) for r in caplog.records)


async def test_calls_past_the_per_turn_cap_are_answered_not_run(
    model: FakeModel, workspace: Path
) -> None:
    burst = [call("write_file", path=f"f{i}.txt", content="x") for i in range(5)]
    model.play(reply(tool_calls=burst), reply(content="Done."))

    result = await executors.build("ollama", settings_for(model, agentic_max_calls_per_turn=2)).run(
        context(workspace)
    )

    assert result.details["files_changed"] == ["f0.txt", "f1.txt"]
    assert [json.loads(m["content"]).get("error_code") for m in model.tool_messages(1)] == [
        None,
        None,
        "too_many_calls",
        "too_many_calls",
        "too_many_calls",
    ]
