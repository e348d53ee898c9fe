"""The pull-request feedback loop end to end: a goal's task, done by a real sidecar, opens a
pull request at a fake GitHub; GitHub's webhooks then report a failed check and a review asking
for changes, and each becomes a follow-up task on the same branch carrying the log tail or the
comments, which the sidecar does and pushes to that branch; a merge conflict after a push to
main is the third round, and the fourth escalates.

The queue, the scheduler and the hub run in this process, the llm-registry on a real socket
(the sidecar's agent loop calls its gateway); one fake Ollama plans, judges and codes.
"""

import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client

from agentcom_common.settings import CommonSettings
from agentcom_common.testing import NatsServer, eventually
from fake_github import FakeGitHub, repository, signed
from fake_llm import FakeLLM
from goal_fakes import GREETING_PLAN, greeting_goal, verdict
from goal_stack import GoalStack, goal_stack

Json = dict[str, Any]
SECRET = "webhook secret for the test"
GITHUB = "acme/widgets"
LOG = "collecting 3 items\nFAILED test_greeting.py::test_says_hello\nE  assert 'helo' == 'hello'\n"
MET = verdict(True)


@dataclass
class Coder(FakeLLM):
    """Plans `GREETING_PLAN`, judges every criterion met, and as the agent writes one file per task
    (`work-<n>.txt` for the n-th follow-up), then answers done. `seen` keeps each agent
    task's user message (its description); `meanwhile` runs before a follow-up writes."""

    seen: list[str] = field(default_factory=list[str])
    # run once each before a follow-up's file is written (a person pushing to the branch)
    meanwhile: list[Callable[[], None]] = field(default_factory=list[Callable[[], None]])

    def answer(self, body: Json) -> tuple[str, Json | None]:
        messages: list[Json] = body["messages"]
        system = str(messages[0].get("content", ""))
        if "You plan work" in system:
            return json.dumps(GREETING_PLAN), None
        if "You check whether work" in system:
            return MET, None
        task = str(messages[1]["content"])
        if any(m.get("role") == "tool" for m in messages):
            return "Done.", None
        if task.startswith("Write the greeting"):
            return "", {
                "name": "write_file",
                "arguments": {"path": "greeting.txt", "content": "hello\n"},
            }
        self.seen.append(task)
        while self.meanwhile:
            self.meanwhile.pop(0)()
        path = f"work-{len(self.seen)}.txt"
        return "", {"name": "write_file", "arguments": {"path": path, "content": task[:200]}}


@dataclass
class Stack(GoalStack[Coder]):
    github: FakeGitHub


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
        hub_github_webhook_secret=SECRET,
        hub_github_api_url=github.url,
        hub_github_log_tail=2,
    ) as made:
        yield Stack(made.queue, made.scheduler, made.hub, made.registry_url, model, github)


async def deliver(stack: Stack, event: str, payload: Json, origin: Path) -> Json:
    payload = payload | {"repository": repository(GITHUB, str(origin))}
    body, headers = signed(SECRET, event, payload, str(uuid.uuid4()))
    reply = await stack.hub.post("/api/webhooks/github", content=body, headers=headers)
    assert reply.status_code == 200, reply.text
    return reply.json()


def failed_check(branch: str, sha: str, job: int) -> Json:
    return {
        "action": "completed",
        "check_run": {
            "id": job,
            "name": "tests",
            "conclusion": "failure",
            "head_sha": sha,
            "html_url": f"https://github.example/{GITHUB}/runs/{job}",
            "check_suite": {"head_branch": branch},
        },
    }


def changes_requested(pull: Json, review: int) -> Json:
    return {
        "action": "submitted",
        "review": {
            "id": review,
            "state": "changes_requested",
            "body": "Not quite.",
            "user": {"login": "octocat"},
        },
        "pull_request": pull,
    }


async def completed(stack: Stack, task_id: str, sidecars: Any) -> Json:
    async def done() -> Json:
        task = (await stack.queue.get(f"/api/tasks/{task_id}")).json()
        assert task["state"] not in ("failed", "dead_letter"), (task, sidecars.log("a1")[-3000:])
        assert task["state"] == "completed", task["state"]
        return task

    return await eventually(done, timeout=90)


async def test_checks_and_reviews_become_follow_ups_on_the_branch_and_the_fourth_escalates(
    stack: Stack, sidecars: Any, repos: Any, nats_server: NatsServer, nc: Client, tmp_path: Path
) -> None:
    origin = repos.origin(tmp_path, {"README.md": "# greetings\n"})
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
    escalations = await nc.subscribe("agentcom.evt.github.pr_escalated")  # pyright: ignore[reportUnknownMemberType]

    goal_id = await greeting_goal(stack.hub, origin)

    async def complete() -> Json:
        goal = (await stack.hub.get(f"/api/goals/{goal_id}")).json()
        assert goal["state"] == "complete", (
            goal["state"],
            goal["reason"],
            sidecars.log("a1")[-2000:],
        )
        return goal

    await eventually(complete, timeout=90)
    (pull,) = stack.github.pulls  # the sidecar opened it through the fake's pulls API
    branch = pull["head"]["ref"]
    assert branch.startswith("agentcom/a1/task-")

    def commits() -> int:
        return int(repos.git("rev-list", "--count", f"main..{branch}", cwd=origin))

    assert commits() == 1

    # round 1: a failed check; the hub reads the job's log from the API
    stack.github.logs[101] = LOG
    sha = repos.git("rev-parse", branch, cwd=origin).strip()
    one = await deliver(stack, "check_run", failed_check(branch, sha, 101), origin)
    assert one["outcome"] == "acted", one
    first = (await stack.hub.get(f"/api/goals/{goal_id}")).json()["pr_rounds"][0]
    assert (first["round"], first["kind"], first["escalated"]) == (1, "check_failed", False)
    task = await completed(stack, first["task_id"], sidecars)
    assert task["branch"] == branch
    assert (
        "FAILED test_greeting.py::test_says_hello\nE  assert 'helo' == 'hello'"
        in task["description"]
    )
    assert "collecting 3 items" not in task["description"]  # the tail: the last two lines
    assert task["metadata"]["feedback"] == {"round": 1, "of": 3, "kind": "check_failed"}
    assert task["metadata"]["prefer_agent"] == "a1"
    assert "E  assert 'helo' == 'hello'" in stack.model.seen[0]  # the agent was told
    assert task["result"]["branch"] == branch
    assert commits() == 2  # pushed onto the pull request's branch, no new branch or PR
    assert len(stack.github.pulls) == 1

    # round 2: a review asking for changes, its comments with file and line
    stack.github.comments[(pull["number"], 7)] = [
        {"path": "greeting.txt", "line": 1, "body": "Say hello, world."}
    ]
    two = await deliver(stack, "pull_request_review", changes_requested(pull, 7), origin)
    assert two["outcome"] == "acted", two
    second = (await stack.hub.get(f"/api/goals/{goal_id}")).json()["pr_rounds"][1]
    assert (second["round"], second["kind"]) == (2, "changes_requested")
    task = await completed(stack, second["task_id"], sidecars)
    assert "greeting.txt:1: Say hello, world." in task["description"]
    assert "octocat asked for changes: Not quite." in task["description"]
    assert "greeting.txt:1: Say hello, world." in stack.model.seen[1]
    assert commits() == 3

    # a redelivered review (new delivery id, same review) makes no round
    again = await deliver(stack, "pull_request_review", changes_requested(pull, 7), origin)
    assert again["outcome"] == "ignored", again

    # round 3: a push to main leaves the pull request conflicting (GitHub's `mergeable`); the
    # hub's mirror names the file (main got its own greeting.txt)
    seed = tmp_path / "person"
    repos.git("clone", "--quiet", str(origin), str(seed), cwd=tmp_path)
    (seed / "greeting.txt").write_text("bonjour\n")
    repos.git("add", "greeting.txt", cwd=seed)
    repos.git("commit", "--quiet", "-m", "main's own greeting", cwd=seed)
    repos.git("push", "--quiet", "origin", "main", cwd=seed)
    stack.github.pull(pull["number"])["mergeable"] = False
    stack.github.pull(pull["number"])["head"]["sha"] = repos.git(
        "rev-parse", branch, cwd=origin
    ).strip()
    push = {"ref": "refs/heads/main", "after": "c" * 40}
    three = await deliver(stack, "push", push, origin)
    assert three["outcome"] == "acted", three
    assert f"refreshed the mirror of {origin}" in three["done"]
    third = (await stack.hub.get(f"/api/goals/{goal_id}")).json()["pr_rounds"][2]
    assert (third["round"], third["kind"]) == (3, "merge_conflict")
    task = await completed(stack, third["task_id"], sidecars)
    assert f"{branch} no longer merges into main" in task["description"]
    assert "Conflicting files: greeting.txt" in task["description"]
    assert commits() == 4
    # round 4 escalates instead
    four = await deliver(stack, "pull_request_review", changes_requested(pull, 8), origin)
    assert four["outcome"] == "acted", four

    goal = (await stack.hub.get(f"/api/goals/{goal_id}")).json()
    assert goal["state"] == "needs_review"
    assert "used its 3 feedback rounds" in goal["reason"]
    assert [(r["round"], r["escalated"], r["task_id"] is None) for r in goal["pr_rounds"]] == [
        (1, False, False),
        (2, False, False),
        (3, False, False),
        (4, True, True),
    ]
    assert [t["kind"] for t in goal["tasks"]].count("pr_feedback") == 3
    escalated = json.loads((await escalations.next_msg(timeout=10)).data)
    assert (escalated["goal_id"], escalated["number"], escalated["rounds"]) == (
        goal_id,
        pull["number"],
        4,
    )


async def test_a_follow_up_whose_push_is_refused_merges_the_branch_or_reports_the_conflict(
    stack: Stack, sidecars: Any, repos: Any, nats_server: NatsServer, tmp_path: Path
) -> None:
    """Someone pushes to the pull request's branch while a follow-up runs, so its push is no
    fast-forward: a commit that merges is merged in and the push made again; one that
    conflicts leaves the work on a branch of its own, reported as a merge conflict against
    the pull request's branch, which the hub heals (an urgent task) and counts as a round."""
    origin = repos.origin(tmp_path, {"README.md": "# greetings\n"})
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

    async def complete() -> None:
        goal = (await stack.hub.get(f"/api/goals/{goal_id}")).json()
        assert goal["state"] == "complete", (goal["state"], goal["reason"])

    await eventually(complete, timeout=90)
    (pull,) = stack.github.pulls
    branch = pull["head"]["ref"]
    person = tmp_path / "person"
    repos.git("clone", "--quiet", "--branch", branch, str(origin), str(person), cwd=tmp_path)

    def push_to_branch(name: str, text: str) -> Callable[[], None]:
        def push() -> None:
            repos.git("fetch", "--quiet", "origin", cwd=person)
            repos.git("reset", "--quiet", "--hard", f"origin/{branch}", cwd=person)
            (person / name).write_text(text)
            repos.git("add", name, cwd=person)
            repos.git("commit", "--quiet", "-m", f"a person's {name}", cwd=person)
            repos.git("push", "--quiet", "origin", f"HEAD:{branch}", cwd=person)

        return push

    def files_on(ref: str) -> set[str]:
        return set(repos.git("ls-tree", "--name-only", ref, cwd=origin).split())

    # round 1: the person's commit touches another file: merged in, pushed to the branch
    stack.model.meanwhile.append(push_to_branch("notes.txt", "a person's notes\n"))
    sha = repos.git("rev-parse", branch, cwd=origin).strip()
    one = await deliver(stack, "check_run", failed_check(branch, sha, 201), origin)
    assert one["outcome"] == "acted", one
    first = (await stack.hub.get(f"/api/goals/{goal_id}")).json()["pr_rounds"][0]
    task = await completed(stack, first["task_id"], sidecars)
    assert (task["result"]["branch"], task["result"]["pushed"]) == (branch, True)
    assert "refused_by" not in task["result"]
    assert {"notes.txt", "work-1.txt"} <= files_on(branch)
    assert "task.branch_caught_up" in sidecars.log("a1")

    # round 2: the person writes the very file the follow-up writes: a conflict
    stack.model.meanwhile.append(push_to_branch("work-2.txt", "the person's version\n"))
    sha = repos.git("rev-parse", branch, cwd=origin).strip()
    two = await deliver(stack, "check_run", failed_check(branch, sha, 202), origin)
    assert two["outcome"] == "acted", two
    second = (await stack.hub.get(f"/api/goals/{goal_id}")).json()["pr_rounds"][1]
    task = await completed(stack, second["task_id"], sidecars)
    side = task["result"]["branch"]
    assert side == f"{branch}--{task['id']}", task["result"]
    assert (task["result"]["pushed"], task["result"]["refused_by"]) == (True, branch)
    conflict = task["result"]["delivery"]["conflict"]
    assert (conflict["base"], conflict["files"]) == (branch, ["work-2.txt"])
    # the branch keeps the person's file, the work is on its own branch
    assert repos.git("show", f"{branch}:work-2.txt", cwd=origin) == "the person's version\n"
    assert "work-2.txt" in files_on(side)
    assert len(stack.github.pulls) == 1  # no pull request of its own

    # the hub: as a conflict at delivery, a critical issue healed by an urgent task ...
    async def healed() -> Json:
        listed = (await stack.hub.get("/api/hub/healing")).json()["runs"]
        found = [r for r in listed if any(i["category"] == "merge_conflict" for i in r["issues"])]
        assert found, listed
        assert found[0]["ended_at"], found[0]
        return found[0]

    run = await eventually(healed, timeout=60)
    issue = next(i for i in run["issues"] if i["category"] == "merge_conflict")
    assert (issue["evidence"]["branch"], issue["evidence"]["base"]) == (side, branch)
    assert issue["evidence"]["files"] == ["work-2.txt"]
    (opened,) = [a for a in run["actions"] if a["action"] == "open_diagnostic_task"]
    urgent = (await stack.queue.get(f"/api/tasks/{opened['detail'].split()[2]}")).json()
    assert (urgent["priority"], urgent["branch"]) == ("urgent", side)
    assert "work-2.txt" in urgent["description"]

    # ... and a round of the pull request asking to merge the side branch in
    async def third_round() -> Json:
        rounds = (await stack.hub.get(f"/api/goals/{goal_id}")).json()["pr_rounds"]
        assert len(rounds) == 3, rounds
        return rounds[2]

    three = await eventually(third_round, timeout=30)
    assert three["kind"] == "merge_conflict"
    follow_up = (await stack.queue.get(f"/api/tasks/{three['task_id']}")).json()
    assert follow_up["branch"] == branch
    assert f"the follow-up's work (kept on {side}) conflicts" in follow_up["description"]
    assert "Conflicting files: work-2.txt" in follow_up["description"]
