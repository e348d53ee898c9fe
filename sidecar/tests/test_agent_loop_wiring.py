"""A task with no command goes to the agent loop (`ollama` executor) through the registry, talks
to the gateway with the agent's token, and its work is verified and pushed like any other."""

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import fake_ollama
from agentcom_common.testing import eventually


@pytest.fixture
async def model() -> AsyncIterator[fake_ollama.FakeModel]:
    async with fake_ollama.serve() as fake:
        yield fake


async def test_a_standard_task_runs_the_agent_loop_and_is_verified_and_pushed(
    hub: Any, run_sidecar: Any, origin: Path, model: fake_ollama.FakeModel
) -> None:
    config = await hub.agent("llm", repos=[{"url": str(origin)}], gateway_url=model.url)
    model.play(
        fake_ollama.reply(
            tool_calls=[fake_ollama.call("write_file", path="answer.txt", content="42\n")]
        ),
        fake_ollama.reply(content="Wrote answer.txt."),
    )
    async with run_sidecar(config):
        made = await hub.submit(
            description="Write the answer",
            repo=str(origin),
            complexity_tier="standard",
            verification_steps=[{"type": "file_exists", "path": "answer.txt"}],
        )

        async def done() -> dict[str, Any]:
            task = await hub.task(made["id"])
            assert task["state"] == "completed", task
            return task

        task = await eventually(done, timeout=60)

    assert task["result"]["verified"] is True
    assert model.headers[0]["authorization"] == f"Bearer {config.token.get_secret_value()}"
    shown = _git_show(origin, f"{task['result']['branch']}:answer.txt")
    assert shown == "42\n"


def _git_show(repo: Path, what: str) -> str:
    return subprocess.run(
        ["git", "show", what],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
