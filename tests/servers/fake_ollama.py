"""For tests only: a real HTTP server speaking the Ollama /api/chat protocol with scripted turns.

It lives in `tests/servers/` (on pytest's `pythonpath`, pyright's `extraPaths`), not in
`agentcom_sidecar`: the runtime package must not ship a test server (nor need uvicorn for one).

Each test scripts the turns (`model.play(turn, turn, …)`); the server answers request N with
turn N and records every request (body and headers) for the test to inspect. `serve()` runs it
on a free local port. Tests of the sidecar's registry can drive the agent executors with it.
It also lists its `models` (`/api/tags`, none warm on `/api/ps`), so the llm-registry can
register it, probe it and route to it like a real Ollama.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

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
        del body  # a refusal does not depend on the request
        return status, {"error": error, "detail": detail}

    return turn


@dataclass
class FakeModel:
    url: str
    turns: list[Turn] = field(default_factory=list[Turn])
    requests: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    headers: list[dict[str, str]] = field(default_factory=list[dict[str, str]])
    never: asyncio.Event = field(default_factory=asyncio.Event)
    models: list[str] = field(default_factory=lambda: ["qwen3:8b"])

    def play(self, *turns: Turn) -> None:
        self.turns.extend(turns)

    def hang(self) -> Turn:
        """A turn that never answers (until the test ends)."""

        async def turn(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            del body
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

    async def tags(self, request: Request) -> JSONResponse:
        del request  # the listing does not depend on the request
        return JSONResponse({"models": [{"name": m, "model": m, "size": 1} for m in self.models]})

    async def ps(self, request: Request) -> JSONResponse:
        del request
        return JSONResponse({"models": []})

    def tool_messages(self, request: int) -> list[dict[str, Any]]:
        return [m for m in self.requests[request]["messages"] if m["role"] == "tool"]

    def observation(self, request: int, index: int = -1) -> dict[str, Any]:
        return json.loads(self.tool_messages(request)[index]["content"])


@contextlib.asynccontextmanager
async def serve() -> AsyncGenerator[FakeModel]:
    """Start a fake model server on a free port; stop it (and release hung turns) on exit."""
    port = free_port()
    fake = FakeModel(url=f"http://127.0.0.1:{port}")
    app = Starlette(
        routes=[
            Route("/api/chat", fake.handle, methods=["POST"]),
            Route("/api/tags", fake.tags),
            Route("/api/ps", fake.ps),
        ]
    )
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())

    async def started() -> None:
        assert server.started

    try:
        await eventually(started)
        yield fake
    finally:
        fake.never.set()
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
