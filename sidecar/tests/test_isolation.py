"""A task's commands (agent loop, shell, checks) run in the namespace sandbox and cannot read
the agent's config or state. Where they cannot be isolated, the sidecar says so (heartbeat,
status, agent view), tells the model the truth, and refuses those tasks when isolation is
required.

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
from agentcom_sidecar.namespaces import available as namespaces_available


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


def _snoop(config: Any) -> list[str]:
    """A shell command that tries to read the agent's credentials and journal, then proves it
    ran (and could write its workspace)."""
    script = (  # the journal first: the output's tail then still holds the rest
        f'cat "{config.journal_path}"; ls -a "{config.state}"; cat "{config.status_path}"; '
        f'cat "{config.path}"; echo; echo wrote > out.txt; echo "snooped in $(pwd)"'
    )
    return ["sh", "-c", script]


async def test_a_shell_task_cannot_read_the_agents_config_or_state(
    hub: Any, run_sidecar: Any, listen: Any
) -> None:
    if not namespaces_available():
        pytest.skip("no user namespaces here: the refusal tests below cover this machine")
    config = await hub.agent(
        "snoop", allow_hub_commands=True, executors=["shell"], github_token="ghp_" + "s" * 36
    )
    secrets = [
        config.token.get_secret_value(),
        config.nats_password.get_secret_value(),
        "ghp_" + "s" * 36,
    ]
    heard = await listen("snoop")
    # the check is the task's own text too: it runs confined like the command
    check = f"sh -c '! grep -q {secrets[0]} {config.path} && ! ls {config.state}/journal.sqlite3'"
    async with run_sidecar(config):
        beat = await _beat(heard)
        made = await hub.submit(
            metadata={"command": _snoop(config)},
            verification_steps=[{"type": "command_succeeds", "command": check}],
            max_retries=0,
        )

        async def done() -> dict[str, Any]:
            task = await hub.task(made["id"])
            assert task["state"] in ("completed", "failed", "dead_letter"), task
            return task

        task = await eventually(done, timeout=60)

    tail = task["result"]["output_tail"]
    assert "snooped in" in tail, task  # it ran, in its workspace
    assert not [s for s in secrets if s in tail]
    assert "journal.sqlite3" not in tail.splitlines()  # the state dir lists empty
    assert "journal.sqlite3: No such file or directory" in tail
    assert task["state"] == "completed", task  # the check could not read them either
    assert beat["isolation"] == "namespaces"


async def test_a_shell_agent_without_namespaces_says_so(
    hub: Any, run_sidecar: Any, listen: Any, no_namespaces: None
) -> None:
    """`auto` on a machine without namespaces: runs unisolated, and says so (the heartbeat of a
    shell-only agent was None)."""
    config = await hub.agent("bare", allow_hub_commands=True, executors=["shell"])
    heard = await listen("bare")
    async with run_sidecar(config):
        beat = await _beat(heard)
    assert beat["isolation"] == "none"


async def test_required_shell_isolation_that_the_machine_cannot_make_refuses_shell_tasks(
    hub: Any, run_sidecar: Any, listen: Any, no_namespaces: None
) -> None:
    # an agent loop too (unisolated in `auto`): the agent can take other work, so it is not
    # blocked, and the shell task reaches it and is refused
    config = await hub.agent(
        "strictshell",
        allow_hub_commands=True,
        executors=["shell", "ollama"],
        shell_isolation="namespaces",
    )
    heard = await listen("strictshell")
    async with run_sidecar(config):
        beat = await _beat(heard)
        made = await hub.submit(metadata={"command": _snoop(config)})
        # an LLM task whose check is a command: the check would run unisolated, so it is
        # refused too, before any model turn
        checked = await hub.submit(
            description="Write the answer",
            complexity_tier="standard",
            verification_steps=[{"type": "command_succeeds", "command": "true"}],
        )

        async def refused() -> dict[str, dict[str, Any]]:
            rejected = {r["task_id"]: r for r in heard if r["kind"] == "rejected"}
            assert set(rejected) == {made["id"], checked["id"]}, rejected
            return rejected

        both = await eventually(refused, timeout=30)
        task = await hub.task(made["id"])

    assert both[checked["id"]]["code"] == "isolation_unavailable"
    rejected = both[made["id"]]

    assert rejected["code"] == "isolation_unavailable"
    assert "shell_isolation: namespaces" in rejected["error"]
    assert task["state"] in ("queued", "assigned")  # refused, never run
    assert task["result"] is None
    assert not list(config.workspaces.glob("scratch/*/out.txt"))  # nothing ran unisolated
    assert beat["isolation"] == "unavailable"


async def test_a_shell_only_agent_that_cannot_isolate_as_required_is_blocked_saying_why(
    hub: Any, run_sidecar: Any, listen: Any, no_namespaces: None
) -> None:
    config = await hub.agent(
        "stuck", allow_hub_commands=True, executors=["shell"], shell_isolation="namespaces"
    )
    heard = await listen("stuck")
    async with run_sidecar(config):
        beat = await _beat(heard)
    assert "shell_isolation: namespaces" in (beat["blocked"] or ""), beat
    assert beat["isolation"] == "unavailable"
