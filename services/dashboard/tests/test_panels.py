"""Panels fed by events of services that may not exist yet: hub, goals, tool calls."""

import json
from typing import Any

import httpx
from dashboard_stack import Stack
from nats.aio.client import Client
from nats.js import JetStreamContext

from agentcom_common.testing import eventually


async def snapshot(stack: Stack) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.dashboard, timeout=10) as client:
        return (await client.get("/ui/snapshot")).json()


async def test_hub_and_goal_events_fill_their_placeholders(
    stack: Stack, js: JetStreamContext
) -> None:
    for state in ("executing", "healing"):
        await js.publish("agentcom.evt.hub.state_changed", json.dumps({"to_state": state}).encode())
    goal = {"goal_id": "g-1", "status": "decomposing", "title": "Ship the dashboard"}
    await js.publish("agentcom.evt.goal.decomposing", json.dumps(goal).encode())

    async def shown() -> dict[str, Any]:
        snap = await snapshot(stack)
        assert snap["hub_events"].get("to_state") == "healing"
        assert snap["goal_events"]
        return snap

    snap = await eventually(shown, timeout=20)
    assert set(snap["hub_time_in_state"]) == {"executing", "healing"}
    assert snap["goal_events"] == [goal | {"event": "decomposing"}]
    assert snap["panels"]["hub"]["available"] is False  # the hub service itself is not running


async def test_tool_calls_stream_and_belong_to_their_task(
    stack: Stack, js: JetStreamContext
) -> None:
    task = await stack.submit(description="use some tools")
    call = {"task_id": task["id"], "tool": "read_file", "arguments": "README.md"}
    await js.publish("agentcom.evt.task.tool_call", json.dumps(call).encode())
    await js.publish("agentcom.evt.task.progress", json.dumps({"task_id": "other"}).encode())

    async def streamed() -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=stack.dashboard, timeout=10) as client:
            detail = (await client.get(f"/ui/tasks/{task['id']}")).json()
        assert detail["tool_calls"], detail
        return detail

    detail = await eventually(streamed, timeout=20)
    assert [c["data"] for c in detail["tool_calls"]] == [call]
    assert detail["task"]["data"]["description"] == "use some tools"
    assert [h["to_state"] for h in detail["history"]["data"]] == ["queued"]
    assert len((await snapshot(stack))["tool_calls"]) == 2


async def test_heartbeats_give_each_agent_its_age_and_load(stack: Stack, nc: Client) -> None:
    beat = {
        "kind": "heartbeat",
        "agent_id": "spoofed",
        "cpu_percent": 41.5,
        "ram_percent": 63,
        "isolation": "none",  # its agent loop runs commands unisolated: the panel says so
    }
    await nc.publish("agentcom.agent.a1.report", json.dumps(beat).encode())
    await nc.publish("agentcom.agent.a2.report", b'{"kind": "hello", "agent_id": "a2"}')
    await nc.publish("agentcom.agent.a3.report", b"not json")

    async def seen() -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=stack.dashboard, timeout=10) as client:
            presence = (await client.get("/ui/presence")).json()
        assert "a1" in presence
        return presence

    presence = await eventually(seen, timeout=20)
    assert set(presence) == {"a1"}  # the subject names the agent, not the body
    assert presence["a1"]["cpu_percent"] == 41.5
    assert presence["a1"]["ram_percent"] == 63
    assert presence["a1"]["isolation"] == "none"
    assert "heartbeat_at" in presence["a1"]
