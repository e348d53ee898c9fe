"""A real HTTP server speaking the Ollama /api/chat protocol, playing scripted model turns.

Each test scripts the turns (`model.play(turn, turn, …)`); the server answers request N with
turn N and records every request (body and headers) for the test to inspect.
"""

import asyncio
import contextlib
import json
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agentcom_common.testing import eventually, free_port

Turn = Callable[[dict[str, Any]], Awaitable[tuple[int, dict[str, Any]]]]


def reply(
    content: str = "",
    tool_calls: list[dict[str, Any]] | None = None,
    tokens: tuple[int, int] = (0, 0),
) -> Turn:
    """A model turn: an assistant message, with native tool calls if given."""

    async def turn(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if tool_calls:
            message["tool_calls"] = tool_calls
        return 200, {
            "model": body.get("model"),
            "created_at": "2026-11-25T00:00:00Z",
            "message": message,
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": tokens[0],
            "eval_count": tokens[1],
        }

    return turn


def call(name: str, **arguments: Any) -> dict[str, Any]:
    """A native Ollama tool call."""
    return {"function": {"name": name, "arguments": arguments}}


def refuse(status: int, error: str, detail: str) -> Turn:
    async def turn(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return status, {"error": error, "detail": detail}

    return turn


@dataclass
class FakeModel:
    url: str
    turns: list[Turn] = field(default_factory=list[Turn])
    requests: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    headers: list[dict[str, str]] = field(default_factory=list[dict[str, str]])
    never: asyncio.Event = field(default_factory=asyncio.Event)

    def play(self, *turns: Turn) -> None:
        self.turns.extend(turns)

    def hang(self) -> Turn:
        """A turn that never answers (until the test ends)."""

        async def turn(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            await self.never.wait()
            return 500, {"error": "test over"}

        return turn

    async def handle(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        index = len(self.requests) - 1
        if index >= len(self.turns):
            return JSONResponse({"error": "script exhausted"}, status_code=500)
        status, payload = await self.turns[index](body)
        return JSONResponse(payload, status_code=status)

    def tool_messages(self, request: int) -> list[dict[str, Any]]:
        return [m for m in self.requests[request]["messages"] if m["role"] == "tool"]

    def observation(self, request: int, index: int = -1) -> dict[str, Any]:
        return json.loads(self.tool_messages(request)[index]["content"])


@pytest.fixture
async def model() -> AsyncIterator[FakeModel]:
    port = free_port()
    fake = FakeModel(url=f"http://127.0.0.1:{port}")
    app = Starlette(routes=[Route("/api/chat", fake.handle, methods=["POST"])])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())

    async def started() -> None:
        assert server.started

    await eventually(started)
    yield fake
    fake.never.set()
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=10)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A git repository with a bug and the test that shows it."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (ws / "test_calc.py").write_text(
        "import unittest\n\nimport calc\n\n\n"
        "class AddTest(unittest.TestCase):\n"
        "    def test_add(self):\n        self.assertEqual(calc.add(2, 3), 5)\n"
    )
    for argv in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start"],
    ):
        subprocess.run(argv, cwd=ws, check=True, capture_output=True)
    return ws
