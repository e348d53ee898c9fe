"""One task through the real hub and the sidecar: accept, run, verify, push, pull request."""

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from agentcom_common.testing import eventually
from agentcom_sidecar.config import SidecarConfig
from agentcom_sidecar.runner import Sidecar

RunSidecar = Callable[[SidecarConfig], AbstractAsyncContextManager[Sidecar]]

# writes its file, then counts environment variables that could carry a credential: none may
WRITE_DONE = [
    "sh",
    "-c",
    'echo "built" > done.txt; env | grep -ci -e token -e git_config -e ghp_; exit 0',
]


async def finished(hub: Any, task_id: str, state: str = "completed") -> dict[str, Any]:
    async def check() -> dict[str, Any]:
        task = await hub.task(task_id)
        assert task["state"] == state, task
        return task

    return await eventually(check, timeout=90)  # a whole run with its checks; 2 busy cores


async def test_a_shell_task_is_verified_pushed_and_gets_a_pull_request(
    hub: Any, run_sidecar: RunSidecar, origin: Path, github: Any
) -> None:
    config = await hub.agent(
        "builder",
        allow_hub_commands=True,
        repos=[{"url": str(origin), "github": "acme/widgets"}],
        github_token="ghp_" + "x" * 36,
        github_api_url=github.url,
    )
    async with run_sidecar(config):
        made = await hub.submit(
            description="Write the done file",
            repo=str(origin),
            metadata={"command": WRITE_DONE},
            verification_steps=[{"type": "file_exists", "path": "done.txt"}],
        )
        task = await finished(hub, made["id"])

    branch = f"agentcom/builder/{made['id']}-write-the-done-file"
    result = task["result"]
    assert result["output_tail"] == "0"  # the GitHub token went to git, never to the task
    assert result["verified"] is True
    assert result["pr_url"] == "https://github.example/acme/widgets/pull/1"
    assert result["branch"] == branch
    assert github.pulls[0]["head"] == branch
    assert github.pulls[0]["base"] == "main"
    assert made["id"] in github.pulls[0]["title"]
    assert "file_exists done.txt" in github.pulls[0]["body"]
    assert all(auth == "Bearer ghp_" + "x" * 36 for _, _, auth in github.requests)
    log = _git(origin, "log", "--format=%s", branch)
    assert log.splitlines()[0].startswith(f"{made['id']}: Write the done file")
    assert _git(origin, "show", f"{branch}:done.txt") == "built\n"
    assert _git(origin, "log", "--format=%s", "main").splitlines() == ["first"]


async def test_a_shell_task_on_an_agent_that_does_not_run_hub_commands_waits_for_one_that_does(
    hub: Any, run_sidecar: RunSidecar
) -> None:
    config = await hub.agent("careful")
    async with run_sidecar(config):
        made = await hub.submit(metadata={"command": ["true"]}, max_retries=0)

        async def refused() -> None:
            history = await hub.history(made["id"])
            assert [h["to_state"] for h in history] == ["queued", "assigned", "queued"], history
            assert "allow_hub_commands is off" in history[-1]["reason"]

        await eventually(refused, timeout=30)
        task = await hub.task(made["id"])

    # no retry used, nothing dead-lettered: it waits for an agent that runs shell commands
    assert task["state"] == "queued", task
    assert task["retry_count"] == 0, task
    assert task["last_error"] is None


async def test_an_agent_short_of_disk_space_is_blocked_saying_so_and_its_task_waits(
    hub: Any, run_sidecar: RunSidecar
) -> None:
    config = await hub.agent("full", allow_hub_commands=True, min_free_disk_mb=10**12)
    async with run_sidecar(config):
        made = await hub.submit(metadata={"command": ["true"]}, max_retries=0)

        async def blocked() -> dict[str, Any]:
            agent = (await hub.scheduler.get("/api/agents/full")).json()
            assert agent["state"] == "blocked", agent
            return agent

        async def settled() -> dict[str, Any]:
            # it may have been assigned before the blocked heartbeat: the agent's rejection
            # (agent_blocked) can land after the agent shows as blocked
            task = await hub.task(made["id"])
            assert task["state"] != "assigned", task
            return task

        agent = await eventually(blocked, timeout=30)
        task = await eventually(settled, timeout=30)

    assert "MB free for workspaces" in agent["blocked_reason"]
    # not failed for it (it used to be dead-lettered): it waits for an agent that has room
    assert (task["state"], task["retry_count"]) == ("queued", 0), task


async def test_a_task_without_verification_steps_completes_but_is_not_called_verified(
    hub: Any, run_sidecar: RunSidecar
) -> None:
    config = await hub.agent("plain", allow_hub_commands=True)
    async with run_sidecar(config):
        made = await hub.submit(metadata={"command": ["sh", "-c", "echo hi"]})
        task = await finished(hub, made["id"])

    assert task["result"]["verified"] is False
    assert task["result"]["verification"]["status"] == "not_verified"
    assert "not verified" in task["result"]["verification_note"]


async def test_a_failing_command_fails_the_task_with_its_exit_code(
    hub: Any, run_sidecar: RunSidecar
) -> None:
    config = await hub.agent("failer", allow_hub_commands=True)
    async with run_sidecar(config):
        made = await hub.submit(
            metadata={"command": ["sh", "-c", "echo boom >&2; exit 3"]}, max_retries=0
        )
        task = await finished(hub, made["id"], "dead_letter")

    assert "exited with 3" in task["last_error"]
    assert task["result"]["output_tail"] == "boom"


async def test_output_with_a_nul_byte_still_reports_the_outcome(
    hub: Any, run_sidecar: RunSidecar
) -> None:
    """A command's output is whatever the command printed; the hub refuses NUL in a report, so
    the sidecar makes it storable text instead of building a report it can never send."""
    config = await hub.agent("binary", allow_hub_commands=True)
    async with run_sidecar(config):
        made = await hub.submit(metadata={"command": ["printf", "a\\000b"]})
        task = await finished(hub, made["id"])

    assert task["result"]["output_tail"] == "a\ufffdb"


def _git(repo: Path, *args: str) -> str:
    import subprocess

    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


async def test_an_agent_with_no_configured_repos_pushes_to_the_url_submitted_not_its_key(
    hub: Any, run_sidecar: RunSidecar, origin: Path
) -> None:
    # The queue compares repos by key (`.git` dropped); the key of `…/origin.git` is `…/origin`,
    # and here that is another repository: git asked for `…/origin` finds this one first.
    decoy = origin.parent / "origin"
    _git(origin.parent, "clone", "--quiet", str(origin), str(decoy))
    config = await hub.agent("builder", allow_hub_commands=True)
    assert config.repos == []
    async with run_sidecar(config):
        made = await hub.submit(
            description="Write the done file",
            repo=f"{origin}/",
            metadata={"command": WRITE_DONE},
        )
        task = await finished(hub, made["id"])

    assert task["repo"] == str(decoy)  # the key, as matching compares it
    assert task["repo_url"] == str(origin)  # as submitted, bar the trailing slash
    branch = task["result"]["branch"]
    assert _git(origin, "show", f"{branch}:done.txt") == "built\n"
    assert branch not in _git(decoy, "branch", "--list", "--all")
