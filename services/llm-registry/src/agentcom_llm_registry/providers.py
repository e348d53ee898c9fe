"""Provider protocols: one canonical chat shape, translated to and from each wire format.

Canonical = the OpenAI chat shape (messages with `role`, `content`, `tool_calls`,
`tool_call_id`; tools as `{"type": "function", "function": {...}}`), because two of the three
upstream protocols and one of the two gateway protocols already speak it. Upstream adapters
turn it into Ollama `/api/chat`, OpenAI `/chat/completions` or Anthropic `/v1/messages`
requests, and turn their answers (whole or streamed) back into `Reply` / `Delta`.

Streamed tool calls are assembled upstream-side and handed on whole in one delta: Ollama sends
them whole anyway, and an OpenAI client accepts a tool call whose arguments arrive in one chunk.
"""

import json
import time
import uuid
from collections.abc import AsyncIterator
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


def _text(content: Any) -> str:
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


def _args(raw: Any) -> Json:
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
        item: Json = {"role": role, "content": _text(msg.get("content"))}
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
                            "arguments": json.dumps(_args(fn.get("arguments"))),
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
        item: Json = {"role": role, "content": _text(msg.get("content"))}
        if role == "assistant" and msg.get("tool_calls"):
            item["tool_calls"] = [
                {
                    "function": {
                        "name": c["function"]["name"],
                        "arguments": _args(c["function"].get("arguments")),
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


# ---------------------------------------------------------------- upstream requests


@dataclass(slots=True)
class Call:
    """A canonical chat call, ready for any upstream."""

    messages: list[Json]
    tools: list[Json] | None = None
    options: Json = field(default_factory=dict[str, Any])  # temperature, max_tokens, top_p, stop


def build_request(
    provider: Provider, base_url: str, api_key: str | None, model: str, call: Call, stream: bool
) -> tuple[str, Json, dict[str, str]]:
    """(url, JSON body, headers) of one upstream chat request."""
    base = base_url.rstrip("/")
    if provider == "ollama":
        return f"{base}/api/chat", _ollama_request(model, call, stream), _bearer(api_key)
    if provider == "openai":
        body: Json = {"model": model, "messages": call.messages, "stream": stream, **call.options}
        if call.tools:
            body["tools"] = call.tools
        if stream:
            body["stream_options"] = {"include_usage": True}
        return f"{base}/chat/completions", body, _bearer(api_key)
    headers = {"anthropic-version": ANTHROPIC_VERSION}
    if api_key:
        headers["x-api-key"] = api_key
    return f"{base}/v1/messages", _anthropic_request(model, call, stream), headers


def _bearer(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _ollama_request(model: str, call: Call, stream: bool) -> Json:
    body: Json = {"model": model, "messages": messages_to_ollama(call.messages), "stream": stream}
    if call.tools:
        body["tools"] = tools_to_ollama(call.tools)
    options = dict(call.options)
    if "max_tokens" in options:
        options["num_predict"] = options.pop("max_tokens")
    if options:
        body["options"] = options
    return body


def _anthropic_request(model: str, call: Call, stream: bool) -> Json:
    system, messages = messages_to_anthropic(call.messages)
    body: Json = {
        "model": model,
        "messages": messages,
        "max_tokens": int(call.options.get("max_tokens") or 4096),
        "stream": stream,
    }
    body |= {k: call.options[k] for k in ("temperature", "top_p") if k in call.options}
    if "stop" in call.options:
        stop = call.options["stop"]
        body["stop_sequences"] = [stop] if isinstance(stop, str) else stop
    if system:
        body["system"] = system
    if call.tools:
        body["tools"] = [
            {
                "name": t["function"]["name"],
                "description": t["function"].get("description", ""),
                "input_schema": t["function"].get("parameters") or {"type": "object"},
            }
            for t in call.tools
            if t.get("type", "function") == "function"
        ]
    return body


def messages_to_anthropic(messages: list[Json]) -> tuple[str, list[Json]]:
    """System text apart; tool calls as `tool_use` blocks, tool replies as `tool_result`."""
    system: list[str] = []
    out: list[Json] = []

    def append(role: str, blocks: list[Json]) -> None:
        if out and out[-1]["role"] == role:  # Anthropic wants roles to alternate
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})

    for msg in messages:
        role = msg.get("role")
        text = _text(msg.get("content"))
        if role == "system":
            system.append(text)
        elif role == "tool":
            append(
                "user",
                [
                    {
                        "type": "tool_result",
                        "tool_use_id": msg.get("tool_call_id", ""),
                        "content": text,
                    }
                ],
            )
        elif role == "assistant":
            blocks: list[Json] = [{"type": "text", "text": text}] if text else []
            for c in as_list(msg.get("tool_calls")):
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": c.get("id") or new_call_id(),
                        "name": c["function"]["name"],
                        "input": _args(c["function"].get("arguments")),
                    }
                )
            append("assistant", blocks)
        else:
            append("user", [{"type": "text", "text": text}])
    return "\n\n".join(system), out


# ---------------------------------------------------------------- upstream replies


def parse_reply(provider: Provider, body: Json) -> Reply:
    try:
        if provider == "ollama":
            msg = as_obj(body.get("message"))
            calls = [
                ToolCall(
                    new_call_id(), c["function"]["name"], _args(c["function"].get("arguments"))
                )
                for c in as_list(msg.get("tool_calls"))
            ]
            return Reply(
                content=msg.get("content") or "",
                tool_calls=calls,
                finish="tool_calls" if calls else (body.get("done_reason") or "stop"),
                tokens_in=int(body.get("prompt_eval_count") or 0),
                tokens_out=int(body.get("eval_count") or 0),
                model=body.get("model", ""),
            )
        if provider == "openai":
            choice = body["choices"][0]
            msg = as_obj(choice.get("message"))
            calls = [
                ToolCall(
                    c.get("id") or new_call_id(),
                    c["function"]["name"],
                    _args(c["function"].get("arguments")),
                )
                for c in as_list(msg.get("tool_calls"))
            ]
            usage = as_obj(body.get("usage"))
            return Reply(
                content=_text(msg.get("content")),
                tool_calls=calls,
                finish=choice.get("finish_reason") or ("tool_calls" if calls else "stop"),
                tokens_in=int(usage.get("prompt_tokens") or 0),
                tokens_out=int(usage.get("completion_tokens") or 0),
                model=body.get("model", ""),
            )
        text: list[str] = []
        calls: list[ToolCall] = []
        for block in map(as_obj, as_list(body.get("content"))):
            if block.get("type") == "text":
                text.append(block.get("text", ""))
            elif block.get("type") == "tool_use":
                calls.append(ToolCall(block["id"], block["name"], _args(block.get("input"))))
        usage = as_obj(body.get("usage"))
        return Reply(
            content="".join(text),
            tool_calls=calls,
            finish=_anthropic_finish(body.get("stop_reason")),
            tokens_in=int(usage.get("input_tokens") or 0),
            tokens_out=int(usage.get("output_tokens") or 0),
            model=body.get("model", ""),
        )
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise UpstreamError(f"malformed {provider} reply: {type(exc).__name__}") from exc


def _anthropic_finish(reason: Any) -> str:
    return {"tool_use": "tool_calls", "max_tokens": "length"}.get(str(reason), "stop")


async def parse_stream(provider: Provider, lines: AsyncIterator[bytes]) -> AsyncIterator[Delta]:
    """Upstream stream (NDJSON for Ollama, SSE otherwise) -> deltas; the last has done=True."""
    try:
        if provider == "ollama":
            async for delta in _ollama_stream(lines):
                yield delta
        elif provider == "openai":
            async for delta in _openai_stream(lines):
                yield delta
        else:
            async for delta in _anthropic_stream(lines):
                yield delta
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise UpstreamError(f"malformed {provider} stream: {type(exc).__name__}") from exc


async def _ollama_stream(lines: AsyncIterator[bytes]) -> AsyncIterator[Delta]:
    async for line in lines:
        if not line.strip():
            continue
        body = json.loads(line)
        if "error" in body:
            raise UpstreamError(f"ollama stream error: {str(body['error'])[:200]}")
        msg = as_obj(body.get("message"))
        calls = [
            ToolCall(new_call_id(), c["function"]["name"], _args(c["function"].get("arguments")))
            for c in as_list(msg.get("tool_calls"))
        ]
        if body.get("done"):
            if msg.get("content") or calls:
                yield Delta(content=msg.get("content") or "", tool_calls=calls)
            yield Delta(
                done=True,
                finish=body.get("done_reason") or "stop",
                tokens_in=int(body.get("prompt_eval_count") or 0),
                tokens_out=int(body.get("eval_count") or 0),
            )
            return
        yield Delta(content=msg.get("content") or "", tool_calls=calls)
    raise UpstreamError("ollama stream ended without done")


async def _sse(lines: AsyncIterator[bytes]) -> AsyncIterator[str]:
    async for raw in lines:
        line = raw.decode().strip()
        if line.startswith("data:"):
            yield line[5:].strip()


async def _openai_stream(lines: AsyncIterator[bytes]) -> AsyncIterator[Delta]:
    calls: dict[int, Json] = {}
    finish = "stop"
    tokens_in = tokens_out = 0
    async for data in _sse(lines):
        if data == "[DONE]":
            break
        body = json.loads(data)
        if usage := body.get("usage"):
            tokens_in = int(usage.get("prompt_tokens") or 0)
            tokens_out = int(usage.get("completion_tokens") or 0)
        for choice in as_list(body.get("choices")):
            delta = as_obj(choice.get("delta"))
            if text := delta.get("content"):
                yield Delta(content=text)
            for piece in as_list(delta.get("tool_calls")):
                slot = calls.setdefault(piece.get("index", 0), {"id": "", "name": "", "args": ""})
                fn = as_obj(piece.get("function"))
                slot["id"] = piece.get("id") or slot["id"]
                slot["name"] += fn.get("name") or ""
                slot["args"] += fn.get("arguments") or ""
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
    else:
        raise UpstreamError("openai stream ended without [DONE]")
    done = [
        ToolCall(s["id"] or new_call_id(), s["name"], _args(s["args"]))
        for _, s in sorted(calls.items())
    ]
    if done:
        yield Delta(tool_calls=done)
    yield Delta(done=True, finish=finish, tokens_in=tokens_in, tokens_out=tokens_out)


@dataclass(slots=True)
class _AnthropicState:
    blocks: dict[int, Json] = field(default_factory=dict[int, Json])
    finish: str = "stop"
    tokens_in: int = 0
    tokens_out: int = 0
    stopped: bool = False

    def take(self, body: Json) -> Delta | None:
        """Fold one SSE event in; return a text delta to pass on, if any."""
        kind = body.get("type")
        if kind == "message_start":
            self.tokens_in = int(as_obj(body["message"].get("usage")).get("input_tokens") or 0)
        elif kind == "content_block_start" and body["content_block"].get("type") == "tool_use":
            block = body["content_block"]
            self.blocks[body["index"]] = {"id": block["id"], "name": block["name"], "args": ""}
        elif kind == "content_block_delta":
            delta = body["delta"]
            if delta.get("type") == "text_delta":
                return Delta(content=delta.get("text", ""))
            if delta.get("type") == "input_json_delta":
                self.blocks[body["index"]]["args"] += delta.get("partial_json", "")
        elif kind == "message_delta":
            self.finish = _anthropic_finish(as_obj(body.get("delta")).get("stop_reason"))
            self.tokens_out = int(as_obj(body.get("usage")).get("output_tokens") or 0)
        elif kind == "error":
            raise UpstreamError(f"anthropic stream error: {str(body.get('error'))[:200]}")
        elif kind == "message_stop":
            self.stopped = True
        return None


async def _anthropic_stream(lines: AsyncIterator[bytes]) -> AsyncIterator[Delta]:
    state = _AnthropicState()
    async for data in _sse(lines):
        if (delta := state.take(json.loads(data))) is not None:
            yield delta
        if state.stopped:
            break
    else:
        raise UpstreamError("anthropic stream ended without message_stop")
    done = [ToolCall(b["id"], b["name"], _args(b["args"])) for _, b in sorted(state.blocks.items())]
    if done:
        yield Delta(tool_calls=done)
    yield Delta(
        done=True, finish=state.finish, tokens_in=state.tokens_in, tokens_out=state.tokens_out
    )


def discovery_paths(provider: Provider) -> tuple[str, str | None]:
    """(models path, warm-models path) relative to the endpoint's base URL."""
    if provider == "ollama":
        return "/api/tags", "/api/ps"
    if provider == "openai":
        return "/models", None
    return "/v1/models", None


def parse_models(provider: Provider, body: Json) -> list[str]:
    if provider == "ollama":
        return [str(m.get("model") or m.get("name")) for m in as_list(body.get("models"))]
    return [str(m["id"]) for m in as_list(body.get("data"))]


def discovery_headers(provider: Provider, api_key: str | None) -> dict[str, str]:
    if provider == "anthropic":
        return {"anthropic-version": ANTHROPIC_VERSION} | (
            {"x-api-key": api_key} if api_key else {}
        )
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}
