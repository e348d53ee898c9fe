"""Provider protocols: one canonical chat shape, translated to and from each wire format.

Canonical = the OpenAI chat shape (messages with `role`, `content`, `tool_calls`,
`tool_call_id`; tools as `{"type": "function", "function": {...}}`), because two of the three
upstream protocols and one of the two gateway protocols already speak it. This module holds the
canonical shapes and the gateway side (Ollama and OpenAI replies and chunks for our clients);
`upstream` turns the shape into Ollama `/api/chat`, OpenAI `/chat/completions` or Anthropic
`/v1/messages` requests, and their answers (whole or streamed) back into `Reply` / `Delta`.

Streamed tool calls are assembled upstream-side and handed on whole in one delta: Ollama sends
them whole anyway, and an OpenAI client accepts a tool call whose arguments arrive in one chunk.
"""

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

Provider = Literal["ollama", "openai", "anthropic"]
PROVIDERS: tuple[Provider, ...] = ("ollama", "openai", "anthropic")
ANTHROPIC_VERSION = "2023-06-01"
Json = dict[str, Any]


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: Json


@dataclass(slots=True)
class Reply:
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list[ToolCall])
    finish: str = "stop"
    tokens_in: int = 0
    tokens_out: int = 0
    model: str = ""
    cost_usd: float = 0.0  # the ledger's price of the call, set by the gateway


@dataclass(slots=True)
class Delta:
    """One streamed piece: text, whole tool calls, or the end (with token counts)."""

    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list[ToolCall])
    done: bool = False
    finish: str = "stop"
    tokens_in: int = 0
    tokens_out: int = 0


class UpstreamError(Exception):
    """The upstream failed (refused, timed out, answered 5xx or garbage): try the next one."""


class UpstreamRefusedError(UpstreamError):
    """The upstream answered 4xx for this request: another endpoint would refuse it too."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def as_obj(value: Any) -> Json:
    """`value` if it is a JSON object, else an empty one (typed for the checker)."""
    return value if isinstance(value, dict) else {}  # pyright: ignore[reportUnknownVariableType]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []  # pyright: ignore[reportUnknownVariableType]


def text_of(content: Any) -> str:
    """OpenAI content may be a list of parts; keep the text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:  # pyright: ignore[reportUnknownVariableType]
            if isinstance(part, dict) and part.get("type") == "text":  # pyright: ignore[reportUnknownMemberType]
                parts.append(str(part.get("text", "")))  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]
        return "".join(parts)
    return str(content)


def args_of(raw: Any) -> Json:
    if isinstance(raw, dict):
        return dict(raw)  # pyright: ignore[reportUnknownArgumentType]
    if isinstance(raw, str) and raw.strip():
        try:
            parsed = json.loads(raw)
        except ValueError:
            return {"_raw": raw}
        return parsed if isinstance(parsed, dict) else {"_value": parsed}  # pyright: ignore[reportUnknownVariableType]
    return {}


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


# ---------------------------------------------------------------- gateway side: Ollama in/out


def messages_from_ollama(messages: list[Json]) -> list[Json]:
    """Ollama chat messages -> canonical (tool call arguments become JSON strings)."""
    out: list[Json] = []
    pending: list[str] = []  # ids of the last assistant tool calls, for the tool replies
    for msg in messages:
        role = msg.get("role", "user")
        item: Json = {"role": role, "content": text_of(msg.get("content"))}
        if role == "assistant" and msg.get("tool_calls"):
            pending = []
            calls: list[Json] = []
            for call in msg["tool_calls"]:
                fn = as_obj(call.get("function"))
                call_id = call.get("id") or new_call_id()
                pending.append(call_id)
                calls.append(
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {
                            "name": fn.get("name", ""),
                            "arguments": json.dumps(args_of(fn.get("arguments"))),
                        },
                    }
                )
            item["tool_calls"] = calls
        elif role == "tool":
            item["tool_call_id"] = msg.get("tool_call_id") or (pending.pop(0) if pending else "")
            if msg.get("tool_name"):
                item["name"] = msg["tool_name"]
        if msg.get("images"):
            item["images"] = msg["images"]
        out.append(item)
    return out


def messages_to_ollama(messages: list[Json]) -> list[Json]:
    out: list[Json] = []
    names: dict[str, str] = {}
    for msg in messages:
        role = msg.get("role", "user")
        item: Json = {"role": role, "content": text_of(msg.get("content"))}
        if role == "assistant" and msg.get("tool_calls"):
            item["tool_calls"] = [
                {
                    "function": {
                        "name": c["function"]["name"],
                        "arguments": args_of(c["function"].get("arguments")),
                    }
                }
                for c in msg["tool_calls"]
            ]
            names.update({c.get("id", ""): c["function"]["name"] for c in msg["tool_calls"]})
        elif role == "tool":
            name = msg.get("name") or names.get(msg.get("tool_call_id", ""))
            if name:
                item["tool_name"] = name
        if msg.get("images"):
            item["images"] = msg["images"]
        out.append(item)
    return out


def tools_to_ollama(tools: list[Json] | None) -> list[Json] | None:
    return tools  # Ollama takes the OpenAI tool shape as is


def ollama_reply_body(reply: Reply, model: str, duration_ns: int, routing: Json) -> Json:
    message: Json = {"role": "assistant", "content": reply.content}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"function": {"name": c.name, "arguments": c.arguments}} for c in reply.tool_calls
        ]
    return {
        "model": model,
        "created_at": _now_iso(),
        "message": message,
        "done": True,
        "done_reason": "stop" if reply.finish == "tool_calls" else reply.finish,
        "total_duration": duration_ns,
        "prompt_eval_count": reply.tokens_in,
        "eval_count": reply.tokens_out,
        "cost_usd": reply.cost_usd,
        "routing": routing,
    }


def ollama_chunk(delta: Delta, model: str, duration_ns: int, routing: Json | None) -> bytes:
    message: Json = {"role": "assistant", "content": delta.content}
    if delta.tool_calls:
        message["tool_calls"] = [
            {"function": {"name": c.name, "arguments": c.arguments}} for c in delta.tool_calls
        ]
    body: Json = {"model": model, "created_at": _now_iso(), "message": message, "done": delta.done}
    if delta.done:
        body |= {
            "done_reason": "stop" if delta.finish == "tool_calls" else delta.finish,
            "total_duration": duration_ns,
            "prompt_eval_count": delta.tokens_in,
            "eval_count": delta.tokens_out,
        }
    if routing is not None:
        body["routing"] = routing
    return json.dumps(body).encode() + b"\n"


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())


# ---------------------------------------------------------------- gateway side: OpenAI out


def _openai_calls(calls: list[ToolCall]) -> list[Json]:
    return [
        {
            "id": c.id,
            "type": "function",
            "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
        }
        for c in calls
    ]


def openai_reply_body(reply: Reply, model: str, routing: Json) -> Json:
    message: Json = {"role": "assistant", "content": reply.content or None}
    if reply.tool_calls:
        message["tool_calls"] = _openai_calls(reply.tool_calls)
    elif message["content"] is None:
        message["content"] = ""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": reply.finish}],
        "usage": {
            "prompt_tokens": reply.tokens_in,
            "completion_tokens": reply.tokens_out,
            "total_tokens": reply.tokens_in + reply.tokens_out,
        },
        "cost_usd": reply.cost_usd,
        "routing": routing,
    }


def openai_chunk(
    delta: Delta, model: str, chunk_id: str, created: int, routing: Json | None, first: bool
) -> bytes:
    piece: Json = {}
    if first:
        piece["role"] = "assistant"
    if delta.content:
        piece["content"] = delta.content
    if delta.tool_calls:
        piece["tool_calls"] = [
            {"index": i} | call for i, call in enumerate(_openai_calls(delta.tool_calls))
        ]
    body: Json = {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "delta": piece, "finish_reason": delta.finish if delta.done else None}
        ],
    }
    if delta.done:
        body["usage"] = {
            "prompt_tokens": delta.tokens_in,
            "completion_tokens": delta.tokens_out,
            "total_tokens": delta.tokens_in + delta.tokens_out,
        }
    if routing is not None:
        body["routing"] = routing
    return b"data: " + json.dumps(body).encode() + b"\n\n"
