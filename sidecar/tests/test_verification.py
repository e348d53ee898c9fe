"""The build -> verify -> fix loop through the real hub: failed checks feed the next attempt."""

import subprocess
from pathlib import Path
from typing import Any

from agentcom_common.testing import eventually
from agentcom_sidecar.workspaces import directory_for


async def _ended(hub: Any, task_id: str, state: str) -> dict[str, Any]:
    async def check() -> dict[str, Any]:
        task = await hub.task(task_id)
        assert task["state"] == state, task
        return task

    return await eventually(check, timeout=90)  # a whole run with its checks; 2 busy cores


async def _run_verified(
    hub: Any,
    run_sidecar: Any,
    agent: str,
    *,
    retries: int,
    command: list[str],
    steps: list[dict[str, Any]],
    ends: str,
    **submit: Any,
) -> dict[str, Any]:
    """Run one task with `steps` on a fresh sidecar allowed `retries` fix attempts; the task once
    it reaches `ends`."""
    config = await hub.agent(agent, allow_hub_commands=True, max_verification_retries=retries)
    async with run_sidecar(config):
        made = await hub.submit(metadata={"command": command}, verification_steps=steps, **submit)
        return await _ended(hub, made["id"], ends)


# attempt 1 writes nothing; attempt 2 reads the failed checks it was given and fixes them
FIX_ON_RETRY = [
    "sh",
    "-c",
    'if [ -n "$AGENTCOM_FEEDBACK_FILE" ]; then cat "$AGENTCOM_FEEDBACK_FILE"; '
    "touch fixed.txt; fi; echo attempt $AGENTCOM_ATTEMPT",
]


async def test_a_failed_check_feeds_a_fix_attempt_that_passes_and_completes(
    hub: Any, run_sidecar: Any
) -> None:
    task = await _run_verified(
        hub,
        run_sidecar,
        "fixer",
        retries=2,
        command=FIX_ON_RETRY,
        steps=[
            {"type": "file_exists", "path": "fixed.txt"},
            {"type": "command_succeeds", "command": "test -e fixed.txt", "timeout_s": 10},
        ],
        ends="completed",
    )

    result = task["result"]
    assert result["verified"] is True
    assert result["attempts"] == 2
    assert [h["verification"] for h in result["verification_history"]] == ["fail", "pass"]
    assert "file_exists fixed.txt: failed" in result["output_tail"]  # the feedback it was given
    assert result["output_tail"].endswith("attempt 2")
    checks = result["verification"]["checks"]
    assert [(c["check"], c["passed"]) for c in checks] == [
        ("file_exists", True),
        ("command_succeeds", True),
    ]
    assert all(c["duration_ms"] >= 0 for c in checks)


async def test_checks_that_never_all_pass_end_as_partial_pass_with_what_remains(
    hub: Any, run_sidecar: Any
) -> None:
    task = await _run_verified(
        hub,
        run_sidecar,
        "halfway",
        retries=1,
        command=["touch", "half.txt"],
        steps=[
            {"type": "file_exists", "path": "half.txt"},
            {"type": "test_passes", "command": "sh -c 'echo 1 failed; exit 1'"},
        ],
        ends="partial_pass",
    )

    result = task["result"]
    assert result["attempts"] == 2
    assert result["passed"] == ["file_exists half.txt"]
    assert result["remaining"] == ["test_passes sh -c 'echo 1 failed; exit 1'"]
    assert result["verified"] is False
    assert result["verification"]["checks"][1]["output_tail"] == "1 failed"


async def test_checks_that_never_pass_fail_the_task_with_the_report(
    hub: Any, run_sidecar: Any
) -> None:
    task = await _run_verified(
        hub,
        run_sidecar,
        "hopeless",
        retries=1,
        command=["true"],
        steps=[{"type": "file_exists", "path": "never.txt"}],
        ends="dead_letter",
        max_retries=0,
    )

    assert "verification failed after 2 attempt(s): file_exists never.txt" in task["last_error"]
    assert task["result"]["verification"]["status"] == "fail"


async def test_a_check_past_its_timeout_is_killed_and_reported_as_timed_out(
    hub: Any, run_sidecar: Any
) -> None:
    task = await _run_verified(
        hub,
        run_sidecar,
        "patient",
        retries=0,
        command=["true"],
        steps=[{"type": "command_succeeds", "command": "sleep 300", "timeout_s": 1}],
        ends="dead_letter",
        max_retries=0,
    )

    check = task["result"]["verification"]["checks"][0]
    assert (check["passed"], check["timed_out"]) == (False, True)


async def test_a_file_check_never_looks_outside_the_workspace(hub: Any, run_sidecar: Any) -> None:
    task = await _run_verified(
        hub,
        run_sidecar,
        "boxed",
        retries=0,
        command=["true"],
        steps=[{"type": "file_exists", "path": "../../sidecar.json"}],
        ends="dead_letter",
        max_retries=0,
    )

    check = task["result"]["verification"]["checks"][0]
    assert (check["passed"], check["output_tail"]) == (False, "path leaves the workspace")


async def test_git_clean_passes_after_the_task_changed_files_and_they_are_committed(
    hub: Any, run_sidecar: Any, origin: Path
) -> None:
    """The work itself is what the commit holds: a changed tree passes `git_clean`."""
    config = await hub.agent("tidy", allow_hub_commands=True, repos=[{"url": str(origin)}])
    async with run_sidecar(config):
        made = await hub.submit(
            repo=str(origin),
            metadata={"command": ["sh", "-c", "echo built > done.txt; echo bye > README.md"]},
            verification_steps=[{"type": "git_clean"}, {"type": "file_exists", "path": "done.txt"}],
        )
        task = await _ended(hub, made["id"], "completed")

    result = task["result"]
    assert result["verified"] is True, result
    assert [c["check"] for c in result["verification"]["checks"]] == ["git_clean", "file_exists"]
    branch = result["branch"]
    assert _git(origin, "show", f"{branch}:done.txt") == "built\n"
    assert _git(directory_for(config.workspaces, str(origin)), "status", "--porcelain") == ""


async def test_git_clean_fails_naming_the_files_a_check_left_behind(
    hub: Any, run_sidecar: Any, origin: Path
) -> None:
    """A test run that writes an artefact the commit would pick up fails `git_clean`, even
    when `git_clean` is listed before it."""
    config = await hub.agent(
        "messy",
        allow_hub_commands=True,
        repos=[{"url": str(origin)}],
        max_verification_retries=0,
    )
    async with run_sidecar(config):
        made = await hub.submit(
            repo=str(origin),
            metadata={"command": ["sh", "-c", "echo built > done.txt"]},
            verification_steps=[
                {"type": "git_clean"},
                {"type": "test_passes", "command": "sh -c 'echo cov > coverage.dat'"},
            ],
        )
        task = await _ended(hub, made["id"], "partial_pass")

    result = task["result"]
    assert result["remaining"] == ["git_clean"], result
    assert result["passed"] == ["test_passes sh -c 'echo cov > coverage.dat'"]
    clean = result["verification"]["checks"][0]
    assert clean["check"] == "git_clean"
    assert "A\tcoverage.dat" in clean["output_tail"], clean
    assert "done.txt" not in clean["output_tail"]  # the task's own work is not held against it


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout
