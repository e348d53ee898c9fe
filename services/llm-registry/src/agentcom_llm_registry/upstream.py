"""Upstream side of the provider protocols: a canonical `Call` turned into an Ollama, OpenAI or
Anthropic request, their replies and streams turned back into `Reply` / `Delta`, and model
discovery. The canonical shapes and the gateway side (what our clients receive) stay in
`providers`; this module only speaks to upstreams.
"""

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from agentcom_llm_registry.providers import (
    ANTHROPIC_VERSION,
    Delta,
    Json,
    Provider,
    Reply,
    ToolCall,
    UpstreamError,
    args_of,
    as_list,
    as_obj,
    messages_to_ollama,
    new_call_id,
    text_of,
    tools_to_ollama,
)

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
        text = text_of(msg.get("content"))
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
                        "input": args_of(c["function"].get("arguments")),
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
                    new_call_id(), c["function"]["name"], args_of(c["function"].get("arguments"))
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
                    args_of(c["function"].get("arguments")),
                )
                for c in as_list(msg.get("tool_calls"))
            ]
            usage = as_obj(body.get("usage"))
            return Reply(
                content=text_of(msg.get("content")),
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
                calls.append(ToolCall(block["id"], block["name"], args_of(block.get("input"))))
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
            ToolCall(new_call_id(), c["function"]["name"], args_of(c["function"].get("arguments")))
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
        ToolCall(s["id"] or new_call_id(), s["name"], args_of(s["args"]))
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
    done = [
        ToolCall(b["id"], b["name"], args_of(b["args"])) for _, b in sorted(state.blocks.items())
    ]
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
