"""For the goal tests: the judge's answer and a pull worker, shared so each test scripts only
what differs (`test_goals_flow`, `test_goals_crash`)."""

import asyncio
import json

import httpx
from nats.aio.client import Client


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
