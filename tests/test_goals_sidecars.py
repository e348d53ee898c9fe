"""A goal from intake to `complete` with the real scheduler and two real sidecar processes.

The queue, the scheduler and the hub run in this process; the llm-registry runs on a real
socket, because the sidecars' agent loops call its gateway over HTTP (`gateway_url`) while the
hub calls it over NATS. One fake Ollama upstream answers everyone, by who asks:
- the planner ("You plan work"): two dependent tasks, each checked by a command that reads the
  file it must write;
- the judge ("You check whether work"): first one criterion unmet (its gap becomes a follow-up
  task), then every criterion met;
- an agent loop ("You are a coding agent"): a `write_file` call for the file its task names,
  then, once it has seen the tool's result, a final answer.
"""

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

import goal_fakes
from agentcom_common import subjects
from agentcom_common.contracts.system import MessageRefused
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import NatsServer, eventually
from fake_llm import FakeLLM
from goal_fakes import GREETING_TASK
from goal_stack import GoalStack, goal_stack

Json = dict[str, Any]
AGENTS = ("a1", "a2")

PLAN = {
    "summary": "a greeting, then its documentation",
    "tasks": [
        GREETING_TASK,
        {
            "key": "docs",
            "title": "Document the greeting",
            "description": "Create GREETING.md saying what greeting.txt is for",
            "success_criteria": ["GREETING.md explains the greeting"],
            # run in the dependent's own workspace: it sees greeting.txt only if it started
            # from the work of the task it depends on
            "verification": ["grep -q greeting GREETING.md", "grep -q hello greeting.txt"],
            "depends_on": ["code"],
            "new_files": ["GREETING.md"],
            "tier": "standard",
            "estimated_tokens": 500,
        },
    ],
}
GAP = "Write USAGE.md showing how to print the greeting"
# what each task's agent loop writes, by the first line of its task (the user message)
WRITES = {
    "Write the greeting": ("greeting.txt", "hello\n"),
    "Document the greeting": ("GREETING.md", "# greeting\ngreeting.txt holds the greeting.\n"),
    GAP: ("USAGE.md", "cat greeting.txt\n"),
}


def verdict(*met: bool) -> str:
    """The judge's answer; an unmet criterion names the gap task `GAP`."""
    return goal_fakes.verdict(*met, gap=GAP)


def saw_a_tool_result(messages: list[Json]) -> bool:
    return any(m.get("role") == "tool" for m in messages)


@dataclass
class ScriptedModel(FakeLLM):
    """Answers the planner with `PLAN`, the judge with `verdicts` in turn, and each agent loop
    with one `write_file` of its task's file, then a final text."""

    verdicts: list[str] = field(default_factory=list[str])
    asked: list[str] = field(default_factory=list[str])

    def answer(self, body: Json) -> tuple[str, Json | None]:
        messages: list[Json] = body["messages"]
        system = str(messages[0].get("content", ""))
        if "You plan work" in system:
            self.asked.append("plan")
            return json.dumps(PLAN), None
        if "You check whether work" in system:
            self.asked.append("judge")
            return self.verdicts.pop(0), None
        assert "You are a coding agent" in system, system
        task = str(messages[1]["content"]).split("\n", 1)[0]
        self.asked.append(f"agent: {task}")
        if saw_a_tool_result(messages):
            return f"Done: {task}", None
        path, content = WRITES[task]
        return "", {"name": "write_file", "arguments": {"path": path, "content": content}}


Stack = GoalStack[ScriptedModel]


@pytest.fixture
async def stack(
    settings: CommonSettings,
    hub: tuple[httpx.AsyncClient, httpx.AsyncClient],
    admin_token: str,
    tmp_path: Path,
) -> AsyncIterator[Stack]:
    model = ScriptedModel("ollama", models=["qwen3:8b"])
    async with goal_stack(settings, hub, admin_token, tmp_path, model) as made:
        yield made


async def start_agents(stack: Stack, sidecars: Any, nats: NatsServer, origin: Path) -> None:
    for name in AGENTS:
        made = (await stack.scheduler.post("/api/agents", json={"name": name})).json()
        config = sidecars.config(
            made,
            nats.address,
            allow_hub_commands=True,  # the plan's verification commands
            repos=[{"url": str(origin)}],
            gateway_url=stack.registry_url,
            max_verification_retries=0,
        )
        sidecars.start(name, config)

    async def all_idle() -> None:
        for name in AGENTS:
            agent = (await stack.scheduler.get(f"/api/agents/{name}")).json()
            assert agent["state"] == "idle", (agent, sidecars.log(name))

    await eventually(all_idle, timeout=60)


def first_at(history: list[Json], state: str) -> datetime:
    return min(datetime.fromisoformat(h["at"]) for h in history if h["to_state"] == state)


async def test_a_goal_runs_on_two_sidecars_as_a_dag_is_followed_up_and_completes(
    stack: Stack, sidecars: Any, repos: Any, nats_server: NatsServer, tmp_path: Path, nc: Client
) -> None:
    origin = repos.origin(tmp_path, {"README.md": "# greetings\n"})
    refused: list[MessageRefused] = []  # the real agents' progress and tool calls included

    async def on_refused(msg: Msg) -> None:
        refused.append(MessageRefused.model_validate_json(msg.data))

    await nc.subscribe(subjects.MESSAGE_REFUSED, cb=on_refused)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
    stack.model.verdicts = [verdict(True, False), verdict(True, True)]
    await start_agents(stack, sidecars, nats_server, origin)

    submitted = await stack.hub.post(
        "/api/goals",
        json={
            "title": "Greeting",
            "description": "The repo has a greeting and says how to use it",
            "success_criteria": ["there is a greeting", "its use is documented"],
            "repo": str(origin),
        },
    )
    assert submitted.status_code == 201, submitted.text
    goal_id = submitted.json()["id"]

    async def complete() -> Json:
        goal = (await stack.hub.get(f"/api/goals/{goal_id}")).json()
        assert goal["state"] not in ("failed", "needs_review"), goal
        assert goal["state"] == "complete", (goal, [sidecars.log(a)[-2000:] for a in AGENTS])
        return goal

    goal = await eventually(complete, timeout=90)
    assert not [r for r in refused if r.consumer.startswith("hubfsm")], refused

    assert [h["to_state"] for h in goal["history"]] == [
        "submitted",
        "planning",
        "executing",
        "verifying",
        "executing",
        "verifying",
        "complete",
    ]
    assert [t["kind"] for t in goal["tasks"]] == ["plan", "plan", "follow_up"]
    assert {t["state"] for t in goal["tasks"]} == {"completed"}, goal["tasks"]
    assert (goal["tasks_done"], goal["tasks_total"]) == (3, 3)
    assert [v["passed"] for v in goal["verifications"]] == [False, True]
    assert goal["verifications"][0]["report"]["gaps"][0]["gap"] == GAP
    assert [a for a in stack.model.asked if not a.startswith("agent")] == [
        "plan",
        "judge",
        "judge",
    ]

    tasks = (await stack.queue.get("/api/tasks", params={"goal_id": goal_id})).json()["tasks"]
    by_title = {t["description"].split("\n", 1)[0]: t for t in tasks}
    assert sorted(by_title) == sorted(WRITES), by_title
    code, docs, follow_up = (by_title[title] for title in WRITES)
    assert docs["depends_on"] == [code["id"]]
    histories = {
        t["id"]: (await stack.queue.get(f"/api/tasks/{t['id']}/history")).json() for t in tasks
    }

    # the DAG: the dependent task was made only after its dependency had completed, from the
    # branch its dependency pushed, and so it saw the file its dependency wrote
    code_done = first_at(histories[code["id"]], "completed")
    assert first_at(histories[docs["id"]], "queued") >= code_done
    assert first_at(histories[docs["id"]], "working") >= code_done
    assert docs["branch"] == code["result"]["branch"] == docs["result"]["base"], docs
    assert repos.git("show", f"{docs['result']['branch']}:greeting.txt", cwd=origin) == "hello\n"
    # the follow-up was made after the first verdict, and ran to completion on an agent
    assert first_at(histories[follow_up["id"]], "working") >= first_at(
        histories[docs["id"]], "completed"
    )
    assert {h["actor"] for h in histories[follow_up["id"]] if h["to_state"] == "working"} <= set(
        AGENTS
    )

    # every task's work was checked by its own command and pushed to its branch
    for task, (path, content) in zip((code, docs, follow_up), WRITES.values(), strict=True):
        result = task["result"]
        assert repos.git("show", f"{result['branch']}:{path}", cwd=origin) == content, result
    for task in (code, docs):
        assert task["result"]["verified"] is True, task["result"]
    assert follow_up["success_criteria"] == ["its use is documented"]
    # the follow-up started from the plan's last work and ran the plan's checks there
    assert follow_up["branch"] == docs["result"]["branch"], follow_up
    assert [s["command"] for s in follow_up["verification_steps"]] == [
        "grep -q hello greeting.txt",
        "grep -q greeting GREETING.md",
    ]
    assert follow_up["result"]["verified"] is True, follow_up["result"]
    assert stack.model.asked.count(f"agent: {GAP}") == 2  # its write, then its final answer
