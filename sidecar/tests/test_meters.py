"""The sidecar's verification and command instruments, read from the process's metrics as OTLP sends them."""

import asyncio
import os
from pathlib import Path

import pytest

from agentcom_common import metering
from agentcom_common.contracts.task import FileExists
from agentcom_common.testing import metric, task_view
from agentcom_sidecar import verification
from agentcom_sidecar.agentic import tools
from agentcom_sidecar.agentic.sandbox import Sandbox
from agentcom_sidecar.agentic.settings import AgenticSettings
from agentcom_sidecar.executors.base import ExecutionContext
from agentcom_sidecar.executors.shell import ShellExecutor

pytestmark = pytest.mark.usefixtures("meters")


async def test_verification_verdicts_and_checks_are_counted(tmp_path: Path) -> None:
    (tmp_path / "done.txt").write_text("ok")
    steps = [
        FileExists(type="file_exists", path="done.txt"),
        FileExists(type="file_exists", path="no.txt"),
    ]
    before = metering.render()
    report = await verification.run_checks(steps, tmp_path, {})
    after = metering.render()
    assert report.status == "fail"

    def grew(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert grew("agentcom_verifications_total", verdict="fail") == 1
    assert grew("agentcom_verification_check_duration_seconds_count", passed="True") == 1
    assert grew("agentcom_verification_check_duration_seconds_count", passed="False") == 1


async def test_the_commands_of_shell_tasks_and_of_the_agent_loop_are_timed(tmp_path: Path) -> None:
    before = metering.render()
    shell = ShellExecutor()
    for command in (["true"], ["sh", "-c", "exit 4"]):
        ctx = ExecutionContext(
            task=task_view(metadata={"command": command}),
            agent_id="a",
            generation=0,
            workspace=tmp_path,
            deadline=asyncio.get_running_loop().time() + 30,
        )
        await shell.run(ctx)
    sandbox = Sandbox(tmp_path, AgenticSettings(), env=dict(os.environ))
    await tools.call("run_command", {"command": "exit 0"}, sandbox)
    after = metering.render()

    def grew(**labels: str) -> float:
        name = "agentcom_sandbox_command_duration_seconds_count"
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert grew(executor="shell", isolation="none", outcome="ok") == 1
    assert grew(executor="shell", isolation="none", outcome="failed") == 1
    assert grew(executor="agentic", outcome="ok") == 1
