"""Fake LLM upstreams for tests and benchmarks: small real HTTP servers (aiohttp).

`FakeLLM` speaks the published Ollama, OpenAI and Anthropic chat protocols, whole and streamed
(NDJSON / SSE), with tool calls; a test can make it fail, slow down or stop answering. It lives
in `tests/servers/` (pytest's `pythonpath`, pyright's `extraPaths`), not in the llm-registry
wheel; `bench/gateway_bench.py` puts that folder on `sys.path` to use it.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from aiohttp import web

from agentcom_common.testing import free_port
from agentcom_llm_registry.app import create_app
from agentcom_llm_registry.providers import as_list, as_obj
from agentcom_llm_registry.settings import LlmSettings

Json = dict[str, Any]


@contextlib.asynccontextmanager
async def serve(settings: LlmSettings, port: int | None = None) -> AsyncGenerator[str]:
    """The registry on a real socket (uvicorn, lifespan on), on `port` or a free one;
    yields its base URL."""
    port = port or free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_config=None, lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise AssertionError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@dataclass
class FakeLLM:
    name: str
    models: list[str] = field(default_factory=lambda: ["qwen3:8b"])
    warm: list[str] = field(default_factory=list[str])
    status: int = 200  # what chat calls answer; 500 makes them fail
    health_status: int = 200  # what /api/tags, /v1/models answer
    delay: float = 0.0
    hold: asyncio.Event | None = None  # chat calls wait for it once recorded (all in flight)
    break_streams: bool = False  # Ollama streams stop after the first piece, connection cut
    chats: list[Json] = field(default_factory=list[Json])
    port: int = 0
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self, body: Json) -> tuple[str, Json | None]:
        """(text, tool call or None): a tool call when tools are offered and none answered yet."""
        messages: list[Json] = list(map(as_obj, as_list(body.get("messages"))))
        last: Json = messages[-1] if messages else {}
        answered = any(m.get("role") == "tool" for m in messages) or _has_tool_result(messages)
        if body.get("tools") and not answered:
            return "", {"name": "get_weather", "arguments": {"city": "Paris"}}
        content: Any = last.get("content")
        if isinstance(content, list):
            blocks = map(as_obj, as_list(content))
            content = " ".join(str(b.get("content") or b.get("text") or "") for b in blocks)
        return f"{self.name} says: {content}", None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/chat", self.ollama_chat)
        app.router.add_get("/api/tags", self.ollama_tags)
        app.router.add_get("/api/ps", self.ollama_ps)
        app.router.add_post("/v1/chat/completions", self.openai_chat)
        app.router.add_get("/v1/models", self.models_list)
        app.router.add_post("/v1/messages", self.anthropic_chat)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        self.port = self.port or free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def _gate(self, request: web.Request) -> Json | web.Response:
        body: Json = await request.json()
        self.chats.append(body | {"_path": request.path, "_headers": dict(request.headers)})
        if self.hold is not None:
            await self.hold.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.status != 200:
            return web.json_response({"error": "injected failure"}, status=self.status)
        return body

    async def ollama_tags(self, _request: web.Request) -> web.Response:
        if self.health_status != 200:
            return web.json_response({"error": "down"}, status=self.health_status)
        return web.json_response(
            {"models": [{"name": m, "model": m, "size": 1} for m in self.models]}
        )

    async def ollama_ps(self, _request: web.Request) -> web.Response:
        return web.json_response({"models": [{"name": m, "model": m} for m in self.warm]})

    async def models_list(self, _request: web.Request) -> web.Response:
        if self.health_status != 200:
            return web.json_response({"error": "down"}, status=self.health_status)
        return web.json_response(
            {"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]}
        )

    async def ollama_chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._gate(request)
        if isinstance(body, web.Response):
            return body
        text, tool = self.answer(body)
        message: Json = {"role": "assistant", "content": text}
        if tool:
            message["tool_calls"] = [{"function": tool}]
        done = {"done": True, "done_reason": "stop", "prompt_eval_count": 10, "eval_count": 5}
        if not body.get("stream", True):
            return web.json_response(
                {"model": body["model"], "created_at": "2026-01-01T00:00:00Z", "message": message}
                | done
            )
        resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await resp.prepare(request)
        half = len(text) // 2
        for index, piece in enumerate((text[:half], text[half:])):
            if piece and self.break_streams and index == 1:
                await asyncio.sleep(0.05)  # the first piece is on its way; then the upstream dies
                assert request.transport is not None
                request.transport.close()
                return resp
            if piece:
                await resp.write(
                    json.dumps(
                        {
                            "model": body["model"],
                            "message": {"role": "assistant", "content": piece},
                            "done": False,
                        }
                    ).encode()
                    + b"\n"
                )
        if tool:
            await resp.write(
                json.dumps(
                    {
                        "model": body["model"],
                        "message": {
                            "role": "assistant",
                            "content": "",
                            "tool_calls": [{"function": tool}],
                        },
                        "done": False,
                    }
                ).encode()
                + b"\n"
            )
        await resp.write(
            json.dumps(
                {"model": body["model"], "message": {"role": "assistant", "content": ""}} | done
            ).encode()
            + b"\n"
        )
        await resp.write_eof()
        return resp

    async def openai_chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._gate(request)
        if isinstance(body, web.Response):
            return body
        text, tool = self.answer(body)
        calls = (
            [
                {
                    "id": "call_fake1",
                    "type": "function",
                    "function": {"name": tool["name"], "arguments": json.dumps(tool["arguments"])},
                }
            ]
            if tool
            else None
        )
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        finish = "tool_calls" if tool else "stop"
        if not body.get("stream"):
            message: Json = {"role": "assistant", "content": text or None}
            if calls:
                message["tool_calls"] = calls
            return web.json_response(
                {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 1,
                    "model": body["model"],
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": usage,
                }
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def send(
            delta: Json, finish_reason: str | None = None, extra: Json | None = None
        ) -> None:
            chunk = {
                "id": "x",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": body["model"],
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            } | (extra or {})
            await resp.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")

        await send({"role": "assistant", "content": ""})
        half = len(text) // 2
        for piece in (text[:half], text[half:]):
            if piece:
                await send({"content": piece})
        if calls:  # arguments split over two chunks, the way OpenAI streams them
            args = json.dumps(tool["arguments"]) if tool else ""
            await send(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_fake1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": args[:5]},
                        }
                    ]
                }
            )
            await send({"tool_calls": [{"index": 0, "function": {"arguments": args[5:]}}]})
        await send({}, finish)
        await resp.write(
            b"data: "
            + json.dumps(
                {
                    "id": "x",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": body["model"],
                    "choices": [],
                    "usage": usage,
                }
            ).encode()
            + b"\n\n"
        )
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def anthropic_chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._gate(request)
        if isinstance(body, web.Response):
            return body
        assert request.headers.get("anthropic-version"), "Anthropic requires the version header"
        text, tool = self.answer(body)
        blocks: list[Json] = [{"type": "text", "text": text}] if text else []
        if tool:
            blocks.append(
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": tool["name"],
                    "input": tool["arguments"],
                }
            )
        stop = "tool_use" if tool else "end_turn"
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": body["model"],
                    "content": blocks,
                    "stop_reason": stop,
                    "usage": {"input_tokens": 10, "output_tokens": 5},
                }
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def event(kind: str, data: Json) -> None:
            await resp.write(
                f"event: {kind}\ndata: {json.dumps(data | {'type': kind})}\n\n".encode()
            )

        await event(
            "message_start",
            {
                "message": {
                    "id": "msg_1",
                    "model": body["model"],
                    "content": [],
                    "usage": {"input_tokens": 10, "output_tokens": 0},
                }
            },
        )
        for i, block in enumerate(blocks):
            if block["type"] == "text":
                await event(
                    "content_block_start",
                    {"index": i, "content_block": {"type": "text", "text": ""}},
                )
                await event(
                    "content_block_delta",
                    {"index": i, "delta": {"type": "text_delta", "text": text}},
                )
            else:
                await event(
                    "content_block_start",
                    {
                        "index": i,
                        "content_block": {
                            "type": "tool_use",
                            "id": "toolu_1",
                            "name": block["name"],
                            "input": {},
                        },
                    },
                )
                args = json.dumps(block["input"])
                await event(
                    "content_block_delta",
                    {"index": i, "delta": {"type": "input_json_delta", "partial_json": args[:4]}},
                )
                await event(
                    "content_block_delta",
                    {"index": i, "delta": {"type": "input_json_delta", "partial_json": args[4:]}},
                )
            await event("content_block_stop", {"index": i})
        await event(
            "message_delta", {"delta": {"stop_reason": stop}, "usage": {"output_tokens": 5}}
        )
        await event("message_stop", {})
        await resp.write_eof()
        return resp


def _has_tool_result(messages: list[Json]) -> bool:
    for m in messages:
        if any(as_obj(b).get("type") == "tool_result" for b in as_list(m.get("content"))):
            return True
    return False


@dataclass
class ScriptedLLM(FakeLLM):
    """An upstream that answers chat call N with scripted turn N (a native tool call in the
    provider's protocol), then `final` as its text once the script is over: the agent loop's
    model in tests."""

    script: list[Json] = field(default_factory=list[Json])
    final: str = "Done."

    def answer(self, body: Json) -> tuple[str, Json | None]:
        del body  # the script decides, not the request
        index = len(self.chats) - 1  # this call's body is already recorded
        if index < len(self.script):
            return "", self.script[index]
        return self.final, None
