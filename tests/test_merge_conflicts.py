"""A merge conflict end to end: a goal's task, done by a real sidecar against a real git repo,
pushes its branch after a person moved `main` under it with the same file; the sidecar's
delivery reports the conflict (the files), the hub turns it into a critical `merge_conflict`
health issue, healing opens an urgent task carrying the conflicting files, and, the sidecar
having opened a pull request at a fake GitHub, the conflict is also a round of the PR feedback
loop on the same branch.

The queue, the scheduler and the hub run in this process, the llm-registry on a real socket
(the sidecar's agent loop calls its gateway); one fake Ollama plans, judges and codes.
"""

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentcom_common.settings import CommonSettings
from agentcom_common.testing import NatsServer, eventually
from fake_github import FakeGitHub
from fake_llm import FakeLLM
from goal_fakes import GREETING_PLAN, greeting_goal, verdict
from goal_stack import GoalStack, goal_stack

Json = dict[str, Any]
GITHUB = "acme/widgets"
MET = verdict(True)


@dataclass
class Coder(FakeLLM):
    """Plans `GREETING_PLAN` and judges it met; as the agent, before writing greeting.txt, it lets
    `meanwhile` run once (a person pushes their own greeting.txt to main), so the task's
    branch no longer merges into main when the sidecar delivers it."""

    meanwhile: list[Any] = field(default_factory=list[Any])

    def answer(self, body: Json) -> tuple[str, Json | None]:
        messages: list[Json] = body["messages"]
        system = str(messages[0].get("content", ""))
        if "You plan work" in system:
            return json.dumps(GREETING_PLAN), None
        if "You check whether work" in system:
            return MET, None
        if any(m.get("role") == "tool" for m in messages):
            return "Done.", None
        while self.meanwhile:
            self.meanwhile.pop()()
        return "", {
            "name": "write_file",
            "arguments": {"path": "greeting.txt", "content": "hello\n"},
        }


@dataclass
class Stack(GoalStack[Coder]):
    github: FakeGitHub


@pytest.fixture
def hub_timers() -> dict[str, Any]:
    """A sidecar on a loaded machine may miss a few heartbeats: its task must not be handed
    back meanwhile (the conflict is checked on the delivery of the first attempt)."""
    return {"scheduler_missed_heartbeats": 100}


@pytest.fixture
async def stack(
    settings: CommonSettings,
    hub: tuple[httpx.AsyncClient, httpx.AsyncClient],
    admin_token: str,
    tmp_path: Path,
    github: FakeGitHub,
) -> AsyncIterator[Stack]:
    model = Coder("ollama", models=["qwen3:8b"])
    async with goal_stack(
        settings,
        hub,
        admin_token,
        tmp_path,
        model,
        hub_tick_interval=timedelta(milliseconds=50),
        hub_health_interval=timedelta(milliseconds=100),
        hub_healing_cooldown=timedelta(0),
        hub_github_api_url=github.url,
    ) as made:
        yield Stack(made.queue, made.scheduler, made.hub, made.registry_url, model, github)


async def test_a_delivery_that_conflicts_opens_an_urgent_task_and_a_pr_round(
    stack: Stack, sidecars: Any, repos: Any, nats_server: NatsServer, tmp_path: Path
) -> None:
    origin = repos.origin(tmp_path, {"README.md": "# greetings\n"})
    person = tmp_path / "person"
    repos.git("clone", "--quiet", str(origin), str(person), cwd=tmp_path)

    def push_to_main() -> None:
        (person / "greeting.txt").write_text("bonjour\n")
        repos.git("add", "greeting.txt", cwd=person)
        repos.git("commit", "--quiet", "-m", "main's own greeting", cwd=person)
        repos.git("push", "--quiet", "origin", "main", cwd=person)

    stack.model.meanwhile.append(push_to_main)
    made = (await stack.scheduler.post("/api/agents", json={"name": "a1"})).json()
    config = sidecars.config(
        made,
        nats_server.address,
        allow_hub_commands=True,
        repos=[{"url": str(origin), "github": GITHUB}],
        gateway_url=stack.registry_url,
        max_verification_retries=0,
        github_token="ghp_" + "y" * 36,
        github_api_url=stack.github.url,
    )
    sidecars.start("a1", config)
    goal_id = await greeting_goal(stack.hub, origin)

    # the delivery: pushed, a pull request opened, and the conflict with main named
    async def delivered() -> Json:
        goal = (await stack.hub.get(f"/api/goals/{goal_id}")).json()
        planned = [t for t in goal["tasks"] if t["kind"] == "plan"]
        assert len(planned) == 1, (goal["state"], goal["reason"])
        (plan_task,) = planned
        task = (await stack.queue.get(f"/api/tasks/{plan_task['task_id']}")).json()
        assert task["state"] == "completed", (task["state"], sidecars.log("a1")[-2000:])
        return task

    task = await eventually(delivered, timeout=90)
    branch = task["result"]["branch"]
    assert task["result"]["pushed"] is True
    conflict: Json = task["result"]["delivery"].get("conflict") or {}
    assert (conflict.get("base"), conflict.get("files")) == ("main", ["greeting.txt"]), (
        task["result"],
        [
            (m["to_state"], m["reason"][:600])
            for m in (await stack.queue.get(f"/api/tasks/{task['id']}/history")).json()
            if m["to_state"] == "failed"
        ],
    )
    assert task["result"]["delivery"]["action"] != "merge"  # a conflicting PR is not merged
    assert repos.git("rev-parse", branch, cwd=origin).strip()  # the work is kept on its branch

    # the hub: a critical merge_conflict issue, a healing run, an urgent task with the files
    async def healed() -> Json:
        listed = (await stack.hub.get("/api/hub/healing")).json()["runs"]
        found = [r for r in listed if any(i["category"] == "merge_conflict" for i in r["issues"])]
        health = (await stack.hub.get("/api/hub/health")).json()
        assert found, ([(r["outcome"], r["report"]) for r in listed], health)
        assert found[0]["ended_at"], found[0]
        return found[0]

    run = await eventually(healed, timeout=60)
    issue = next(i for i in run["issues"] if i["category"] == "merge_conflict")
    assert issue["severity"] == "critical"
    assert issue["source"] == "sidecar"
    assert (issue["evidence"]["branch"], issue["evidence"]["files"]) == (branch, ["greeting.txt"])
    (opened,) = [a for a in run["actions"] if a["action"] == "open_diagnostic_task"]
    assert opened["outcome"] == "done", opened
    urgent = (await stack.queue.get(f"/api/tasks/{opened['detail'].split()[2]}")).json()
    assert (urgent["priority"], urgent["branch"]) == ("urgent", branch)
    assert "resolve the conflicts in: greeting.txt" in urgent["description"]
    assert urgent["metadata"]["category"] == "merge_conflict"

    # the pull request the sidecar opened: a merge_conflict round on the same branch
    (pull,) = stack.github.pulls
    assert pull["head"]["ref"] == branch

    async def round_made() -> Json:
        goal = (await stack.hub.get(f"/api/goals/{goal_id}")).json()
        (one,) = goal["pr_rounds"]
        return one

    one = await eventually(round_made, timeout=30)
    assert (one["round"], one["kind"], one["escalated"]) == (1, "merge_conflict", False)
    follow_up = (await stack.queue.get(f"/api/tasks/{one['task_id']}")).json()
    assert follow_up["branch"] == branch
    assert "Conflicting files: greeting.txt" in follow_up["description"]
    assert follow_up["metadata"]["feedback"]["kind"] == "merge_conflict"
