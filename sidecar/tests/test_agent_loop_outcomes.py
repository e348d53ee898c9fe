"""An agent loop that stops before the model says it is done keeps its work: a real sidecar
runs the loop against the scripted model server, verifies the workspace as the loop left it,
delivers it, and the queue's task result says what was done and what remains."""

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


async def _ends(hub: Any, task_id: str, state: str) -> dict[str, Any]:
    async def check() -> dict[str, Any]:
        task = await hub.task(task_id)
        assert task["state"] == state, task
        return task

    return await eventually(check, timeout=60)


def _write(n: int) -> fake_ollama.Turn:
    return fake_ollama.reply(
        tool_calls=[fake_ollama.call("write_file", path=f"part{n}.txt", content=f"{n}\n")],
        tokens=(10, 5),
    )


async def test_a_loop_at_its_iteration_limit_keeps_its_work_and_reports_partial_pass(
    hub: Any, run_sidecar: Any, origin: Path, model: fake_ollama.FakeModel
) -> None:
    config = await hub.agent(
        "stopped", repos=[{"url": str(origin)}], gateway_url=model.url, max_verification_retries=2
    )
    model.play(*(_write(n) for n in range(1, 6)))  # a trivial task has 5 turns; never "done"
    async with run_sidecar(config):
        made = await hub.submit(
            description="Write the five parts and the index",
            repo=str(origin),
            complexity_tier="trivial",
            verification_steps=[
                {"type": "file_exists", "path": "part1.txt"},
                {"type": "file_exists", "path": "index.txt"},
                {"type": "git_clean"},
            ],
        )
        task = await _ends(hub, made["id"], "partial_pass")

    result = task["result"]
    assert len(model.requests) == 5  # stopped at the limit: no corrective attempt, no 6th turn
    assert result["stop_reason"] == "max_iterations"
    assert result["done"] == [f"wrote part{n}.txt (2 bytes)" for n in range(1, 6)]
    assert result["remaining"][0] == "file_exists index.txt"  # the check that still fails
    assert "stopped at max_iterations after 5 turns" in result["remaining"][1]
    assert result["passed"] == ["file_exists part1.txt", "git_clean"]
    assert result["verification"]["status"] == "fail"
    assert result["verified"] is False
    details = result["details"]
    assert details["partial"] is True
    assert details["files_changed"] == [f"part{n}.txt" for n in range(1, 6)]
    assert (details["iterations"], details["tool_calls"]) == (5, 5)
    assert (result["tokens_in"], result["tokens_out"]) == (50, 25)
    # the work was kept: committed and pushed on the task's branch
    assert _git(origin, "show", f"{result['branch']}:part5.txt") == "5\n"


async def test_a_loop_cut_off_by_the_deadline_is_verified_as_it_stands(
    hub: Any, run_sidecar: Any, origin: Path, model: fake_ollama.FakeModel
) -> None:
    config = await hub.agent("late", repos=[{"url": str(origin)}], gateway_url=model.url)
    model.play(_write(1), model.hang())  # the second model call never answers
    async with run_sidecar(config):
        made = await hub.submit(
            description="Write part 1",
            repo=str(origin),
            metadata={"timeout_s": 2},
            verification_steps=[{"type": "file_exists", "path": "part1.txt"}],
        )
        task = await _ends(hub, made["id"], "partial_pass")

    result = task["result"]
    assert result["stop_reason"] == "deadline"
    assert result["verification"]["status"] == "pass"  # checked, though the model never finished
    assert result["done"] == ["wrote part1.txt (2 bytes)"]
    assert "the model had not said the task was done" in result["remaining"][0]
    assert _git(origin, "show", f"{result['branch']}:part1.txt") == "1\n"


async def test_a_loop_stopped_before_it_changed_anything_fails_saying_so(
    hub: Any, run_sidecar: Any, origin: Path, model: fake_ollama.FakeModel
) -> None:
    config = await hub.agent("broke", repos=[{"url": str(origin)}], gateway_url=model.url)
    model.play(fake_ollama.refuse(429, "budget_exhausted", "agent broke spent its 2.00 USD"))
    async with run_sidecar(config):
        made = await hub.submit(
            description="Write part 1",
            repo=str(origin),
            max_retries=0,
            verification_steps=[{"type": "file_exists", "path": "part1.txt"}],
        )
        task = await _ends(hub, made["id"], "dead_letter")

    result = task["result"]
    assert result["stop_reason"] == "budget_exhausted"
    assert result["done"] == []
    assert result["remaining"][0] == "file_exists part1.txt"
    assert "spent its 2.00 USD" in result["remaining"][1]
    assert result["verification"]["status"] == "fail"
    assert "Nothing was changed" in task["last_error"]
    assert "branch" not in result  # a failed task is not delivered


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout
