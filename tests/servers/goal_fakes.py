"""For the goal tests: the greeting goal and its plan, the judge's answer and a pull worker,
shared so each test scripts only what differs (`test_goals_flow`, `test_goals_crash`,
`test_goals_sidecars`, `test_merge_conflicts`, `test_pr_feedback`)."""

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from nats.aio.client import Client

GREETING_TASK: dict[str, Any] = {
    "key": "code",
    "title": "Write the greeting",
    "description": "Create greeting.txt holding the word hello",
    "success_criteria": ["greeting.txt says hello"],
    "verification": ["grep -q hello greeting.txt"],
    "new_files": ["greeting.txt"],
    "tier": "standard",
    "estimated_tokens": 1000,
}
"""The planner's one task for the greeting goal: an agent writes greeting.txt."""
GREETING_PLAN: dict[str, Any] = {"summary": "a greeting", "tasks": [GREETING_TASK]}
GREET_PLAN: dict[str, Any] = {
    "summary": "a module, then its test",
    "tasks": [
        {
            "key": "code",
            "title": "Add greet()",
            "description": "Add greet(name) to hello.py returning 'hello <name>'",
            "success_criteria": ["greet('x') == 'hello x'"],
            "verification": ["python -c 'import hello'"],
            "files": ["hello.py"],
            "tier": "standard",
            "estimated_tokens": 1000,
        },
        {
            "key": "test",
            "title": "Test greet()",
            "description": "Add test_hello.py",
            "success_criteria": ["the test passes"],
            "verification": ["python -m unittest -q test_hello"],
            "depends_on": ["code"],
            "new_files": ["test_hello.py"],
            "tier": "trivial",
            "estimated_tokens": 500,
        },
    ],
}
"""A plan of two tasks, the second depending on the first (`test_goals_flow`, the CLI's)."""


async def greeting_goal(hub: httpx.AsyncClient, origin: Path) -> str:
    """Submit the greeting goal on repo `origin` through the hub's route; its id."""
    made = await hub.post(
        "/api/goals",
        json={
            "title": "Greeting",
            "description": "The repo has a greeting",
            "success_criteria": ["there is a greeting"],
            "repo": str(origin),
        },
    )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def verdict(*met: bool, gap: str | None = None) -> str:
    """A judge's answer: criterion n is met when `met[n-1]`; an unmet one names `gap`
    (default `make criterion <n> hold`)."""
    criteria = [
        {
            "criterion": n,
            "met": ok,
            "evidence": "in the results" if ok else "",
            "gap": "" if ok else (gap or f"make criterion {n} hold"),
        }
        for n, ok in enumerate(met, 1)
    ]
    return json.dumps({"summary": "checked", "criteria": criteria})


async def pull_worker(nc: Client, stop: asyncio.Event, done: list[str] | None = None) -> None:
    """Claim over the queue's NATS RPC and report each task completed, until `stop`; `done`
    gets each task's first description line in the order they were done."""
    while not stop.is_set():
        reply = await nc.request(
            "agentcom.rpc.queue.claim", json.dumps({"agent_id": "w1"}).encode(), timeout=10
        )
        task = json.loads(reply.data).get("task")
        if task is None:
            await asyncio.sleep(0.05)  # a pull worker's poll interval; nothing to claim yet
            continue
        title = task["description"].splitlines()[0]
        report = {
            "task_id": task["id"],
            "agent_id": "w1",
            "generation": task["generation"],
            "outcome": "completed",
            "result": {"summary": f"did: {title}"},
        }
        await nc.request("agentcom.rpc.queue.report", json.dumps(report).encode(), timeout=10)
        if done is not None:
            done.append(title)


async def add_local_endpoint(registry: httpx.AsyncClient, url: str) -> None:
    """Register the fake Ollama at `url` as the local tiers' endpoint and see it healthy."""
    added = await registry.post(
        "/api/llm/endpoints",
        json={
            "id": "local1",
            "provider": "ollama",
            "base_url": url,
            "classes": ["local", "local-small"],
            "models": ["qwen3:8b"],
        },
    )
    assert added.status_code == 201, added.text
    checked = await registry.post("/api/llm/endpoints/local1/check")
    assert checked.json()["health"] == "healthy", checked.text
