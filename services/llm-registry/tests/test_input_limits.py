"""Bad input at the registry's HTTP edge is a 422 naming the field, never a 500 (issue 15)."""

import httpx
import pytest


@pytest.mark.parametrize("key", ["\\u0000", "a\\ud800b"])
async def test_an_api_key_postgres_cannot_store_is_a_422(api: httpx.AsyncClient, key: str) -> None:
    body = (
        '{"id": "e1", "provider": "ollama", "base_url": "http://127.0.0.1:9", '
        f'"api_key": "{key}"}}'
    )

    reply = await api.post(
        "/api/llm/endpoints", content=body, headers={"content-type": "application/json"}
    )

    assert reply.status_code == 422, reply.text
    assert reply.json()["field"] == "api_key"
    assert (await api.get("/api/llm/endpoints")).json() == []


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions"])
async def test_chat_with_json_nested_100k_deep_is_a_422(api: httpx.AsyncClient, path: str) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    body = f'{{"model": "m", "messages": [{{"role": "user", "content": {deep}}}]}}'

    reply = await api.post(path, content=body, headers={"content-type": "application/json"})

    assert reply.status_code == 422, reply.text
    assert reply.json()["field"] in ("body", "messages")
    assert "nested deeper than" in reply.json()["detail"]
