# pyright: reportUnknownMemberType=false, reportUnknownVariableType=false, reportUnknownArgumentType=false
# (the ollama and openai clients return partly untyped objects; the asserts check the values)
"""The official `ollama` and `openai` clients chat through the gateway unchanged.

Each runs against every upstream protocol (Ollama, OpenAI, Anthropic fakes), whole and
streamed, with a tool call going out and its result coming back.
"""

import json
from collections.abc import Awaitable, Callable
from typing import Any

import ollama
import openai
import pytest

from fake_llm import FakeLLM

UPSTREAMS = [("ollama", ""), ("openai", "/v1"), ("anthropic", "")]
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


async def _upstream(
    fake: Callable[..., Awaitable[FakeLLM]],
    register: Callable[..., Awaitable[Any]],
    provider: str,
    suffix: str,
) -> FakeLLM:
    server = await fake("up", models=["m1"])
    await register("up", provider, server.url + suffix, classes=["local"], api_key="sk-secret-123")
    return server


@pytest.mark.parametrize(("provider", "suffix"), UPSTREAMS)
async def test_ollama_client_chats_whole_streamed_and_with_tools(
    fake: Callable[..., Awaitable[FakeLLM]],
    register: Callable[..., Awaitable[Any]],
    base_url: str,
    admin_token: str,
    provider: str,
    suffix: str,
) -> None:
    server = await _upstream(fake, register, provider, suffix)
    async with ollama.AsyncClient(
        host=base_url, headers={"Authorization": f"Bearer {admin_token}"}
    ) as client:
        await _ollama_calls(client, server)


async def _ollama_calls(client: Any, server: FakeLLM) -> None:
    """`client` is an `ollama.AsyncClient`; typed Any because its overloads are partly untyped."""

    whole = await client.chat(
        model="m1", messages=[{"role": "user", "content": "hi"}], stream=False
    )
    assert whole.message.content == "up says: hi"
    assert whole.prompt_eval_count == 10
    assert whole.eval_count == 5

    pieces = [
        p
        async for p in await client.chat(
            model="m1", messages=[{"role": "user", "content": "hello"}], stream=True
        )
    ]
    assert "".join(p.message.content or "" for p in pieces) == "up says: hello"
    assert pieces[-1].done
    assert not any(p.done for p in pieces[:-1])

    for stream in (False, True):
        asked = [{"role": "user", "content": "weather?"}]
        if stream:
            got = [
                p
                async for p in await client.chat(
                    model="m1", messages=asked, tools=[WEATHER_TOOL], stream=True
                )
            ]
            calls = [c for p in got for c in p.message.tool_calls or []]
        else:
            calls = (
                await client.chat(model="m1", messages=asked, tools=[WEATHER_TOOL], stream=False)
            ).message.tool_calls or []
        assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [
            ("get_weather", {"city": "Paris"})
        ]
        follow = [
            *asked,
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
                ],
            },
            {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
        ]
        final = await client.chat(model="m1", messages=follow, tools=[WEATHER_TOOL], stream=False)
        assert final.message.content == "up says: sunny"
    sent = server.chats[-1]
    assert (
        sent["_headers"]
        .get("Authorization", sent["_headers"].get("x-api-key", ""))
        .endswith("sk-secret-123")
    )


@pytest.mark.parametrize(("provider", "suffix"), UPSTREAMS)
async def test_openai_client_chats_whole_streamed_and_with_tools(
    fake: Callable[..., Awaitable[FakeLLM]],
    register: Callable[..., Awaitable[Any]],
    base_url: str,
    admin_token: str,
    provider: str,
    suffix: str,
) -> None:
    await _upstream(fake, register, provider, suffix)
    async with openai.AsyncOpenAI(
        base_url=f"{base_url}/v1", api_key=admin_token, max_retries=0
    ) as client:
        await _openai_calls(client)


async def _openai_calls(client: Any) -> None:
    """`client` is an `openai.AsyncOpenAI`; Any, since tools are passed as plain dicts."""

    whole = await client.chat.completions.create(
        model="m1", messages=[{"role": "user", "content": "hi"}]
    )
    assert whole.choices[0].message.content == "up says: hi"
    assert whole.usage is not None
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens) == (10, 5)

    stream = await client.chat.completions.create(
        model="m1", messages=[{"role": "user", "content": "hello"}], stream=True
    )
    chunks = [c async for c in stream]
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "up says: hello"
    )
    assert chunks[-1].choices[0].finish_reason == "stop"

    asked: list[Any] = [{"role": "user", "content": "weather?"}]
    whole = await client.chat.completions.create(model="m1", messages=asked, tools=[WEATHER_TOOL])
    calls = whole.choices[0].message.tool_calls or []
    assert whole.choices[0].finish_reason == "tool_calls"
    call = calls[0]
    assert call.type == "function"
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "get_weather",
        {"city": "Paris"},
    )

    stream = await client.chat.completions.create(
        model="m1", messages=asked, tools=[WEATHER_TOOL], stream=True
    )
    streamed = [
        t
        for c in [c async for c in stream]
        if c.choices
        for t in c.choices[0].delta.tool_calls or []
    ]
    assert streamed[0].function is not None
    assert (streamed[0].function.name, json.loads(streamed[0].function.arguments or "")) == (
        "get_weather",
        {"city": "Paris"},
    )

    follow = [
        *asked,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": call.function.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    final = await client.chat.completions.create(model="m1", messages=follow, tools=[WEATHER_TOOL])
    assert final.choices[0].message.content == "up says: sunny"


async def test_model_lists_show_discovered_models(
    fake: Callable[..., Awaitable[FakeLLM]],
    register: Callable[..., Awaitable[Any]],
    base_url: str,
    admin_token: str,
) -> None:
    server = await fake("a", models=["qwen3:8b", "llama3:8b"])
    await register("a", "ollama", server.url, classes=["local"])
    async with ollama.AsyncClient(
        host=base_url, headers={"Authorization": f"Bearer {admin_token}"}
    ) as client:
        listed = await client.list()
    assert sorted(m.model or "" for m in listed.models) == ["llama3:8b", "qwen3:8b"]
    async with openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=admin_token) as oai:
        models = await oai.models.list()
    assert sorted(m.id for m in models.data) == ["llama3:8b", "qwen3:8b"]
