"""The model, reached through the llm-registry gateway with the Ollama `/api/chat` protocol.

One non-streaming call per turn with the agent's bearer token. The gateway picks and meters the
model; a budget refusal from its ledger (a 4xx whose JSON `error` is `budget_exhausted`) is a
`BudgetRefusedError` so the loop can stop and keep the work. Token counts come from
`prompt_eval_count`/`eval_count`; the model is the one the gateway's `routing` says it chose
(its `model` field echoes the one asked for, a tier name when asked by tier); a `cost_usd` the
gateway adds (the ledger's, by `agentcom_common.prices`) is used as is, else the same table.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import httpx
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from agentcom_common import prices, telemetry
from agentcom_sidecar.agentic.settings import AgenticSettings


class GatewayError(Exception):
    """The model could not be asked (unreachable, 5xx, malformed reply); says which."""


class BudgetRefusedError(GatewayError):
    """The gateway's ledger refused the call: the task or agent budget is spent."""


@dataclass(frozen=True, slots=True)
class ChatReply:
    message: Mapping[str, Any]
    tokens_in: int
    tokens_out: int
    cost_usd: float
    model: str


class ChatClient:
    """Talks to `<gateway>/api/chat` for one task attempt."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: AgenticSettings,
        model: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._http = http
        self._settings = settings
        self.model = model
        self._headers = dict(headers or {})
        if settings.agentic_token is not None:
            self._headers["Authorization"] = f"Bearer {settings.agentic_token.get_secret_value()}"

    async def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]],
        timeout: float,
    ) -> ChatReply:
        url = self._settings.agentic_gateway_url.rstrip("/") + "/api/chat"
        body = {
            "model": self.model,
            "messages": list(messages),
            "tools": list(tools),
            "stream": False,
        }
        # gen_ai semantic conventions; the gateway's span continues this one (`traceparent`)
        with trace.get_tracer(__name__).start_as_current_span(
            f"chat {self.model}",
            kind=SpanKind.CLIENT,
            attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": self.model},
        ) as span:
            reply = await self._chat(url, body, timeout)
            span.set_attributes(
                {
                    "gen_ai.response.model": reply.model,
                    "gen_ai.usage.input_tokens": reply.tokens_in,
                    "gen_ai.usage.output_tokens": reply.tokens_out,
                }
            )
            return reply

    async def _chat(self, url: str, body: dict[str, Any], timeout: float) -> ChatReply:
        headers = telemetry.inject_headers(self._headers)
        try:
            response = await self._http.post(url, json=body, headers=headers, timeout=timeout)
        except httpx.TimeoutException:
            raise GatewayError(f"the gateway did not answer within {timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise GatewayError(f"the gateway is unreachable: {type(exc).__name__}") from None
        payload = _json(response)
        if response.status_code >= 400:
            code = str(payload.get("error", "")) if payload else ""
            detail = str(payload.get("detail", "")) if payload else ""
            if code == "budget_exhausted":
                raise BudgetRefusedError(detail or "the budget is exhausted")
            raise GatewayError(
                f"the gateway answered {response.status_code} {code} {detail}".strip()
            )
        message = payload.get("message") if payload else None
        if payload is None or not isinstance(message, dict):
            raise GatewayError("the gateway's reply has no message object")
        tokens_in = _count(payload, "prompt_eval_count")
        tokens_out = _count(payload, "eval_count")
        # the gateway echoes the model asked for (a tier name, say); `routing` names the one used
        routing = payload.get("routing")
        chosen = cast(dict[str, Any], routing).get("model") if isinstance(routing, dict) else None
        model = str(chosen or payload.get("model") or self.model)
        cost = payload.get("cost_usd")
        if not isinstance(cost, int | float):
            cost = prices.cost(model, tokens_in, tokens_out)
        return ChatReply(cast(dict[str, Any], message), tokens_in, tokens_out, float(cost), model)


def _json(response: httpx.Response) -> dict[str, Any] | None:
    try:
        value = response.json()
    except ValueError:
        return None
    return cast(dict[str, Any], value) if isinstance(value, dict) else None


def _count(payload: Mapping[str, Any], key: str) -> int:
    value = payload.get(key)
    return value if isinstance(value, int) and value >= 0 else 0
