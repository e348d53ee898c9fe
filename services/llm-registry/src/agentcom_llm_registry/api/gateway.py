"""HTTP: the gateway (Ollama /api/*, OpenAI /v1/*) and its ASGI fast path.

Gateway routes read the raw body (no response models) to keep the hot path lean; they check
the fields they use and answer a 422 naming the field otherwise.

It runs past 400 lines because it is one job, both gateway protocols: the Ollama and OpenAI
routes share the body checks, who-pays resolution and problem answers, and the ASGI fast path
at the end serves exactly these routes.
"""

import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, cast

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

# FastAPI has no public hook to name a route its router did not pick (the fast path's)
from fastapi.telemetry._api import _route_selected  # pyright: ignore[reportPrivateUsage]
from starlette.background import BackgroundTask
from starlette.types import ASGIApp, Receive, Scope, Send

from agentcom_common.auth import Principal, Role
from agentcom_common.contracts.llm import GOAL_ID_PATTERN, Routing
from agentcom_common.errors import AgentcomError, ForbiddenError, InvalidError
from agentcom_common.openapi import Problem
from agentcom_common.web import require
from agentcom_llm_registry import providers
from agentcom_llm_registry.api import L
from agentcom_llm_registry.budgets import Who
from agentcom_llm_registry.ops import Llm
from agentcom_llm_registry.providers import Delta, Json
from agentcom_llm_registry.upstream import Call
from agentcom_llm_registry.views import (
    BudgetProblem,
    OpenAIBudgetProblem,
    OpenAIProblem,
    chat_body,
)

log = logging.getLogger(__name__)
CALLER_CLASS = "x-agentcom-caller-class"  # refused: who pays comes from the token
TIER = "x-agentcom-tier"
GOAL = "x-agentcom-goal"
GOAL_ID = re.compile(GOAL_ID_PATTERN)


Caller = Annotated[Principal, require(Role.AGENT)]
routes = APIRouter(tags=["llm gateway"])


async def _body(request: Request) -> Json:
    try:
        raw: Any = json.loads(await request.body())
    except ValueError:
        raise InvalidError("body: must be a JSON object", field="body") from None
    if not isinstance(raw, dict):
        raise InvalidError("body: must be a JSON object", field="body")
    body = cast(Json, raw)
    messages: Any = body.get("messages")
    if (
        not isinstance(messages, list)
        or not messages
        or not all(map(_is_message, cast(list[Any], messages)))
    ):
        raise InvalidError(
            "messages: must be a non-empty list of {role, content, tool_calls?: [{...}]}",
            field="messages",
        )
    model: Any = body.get("model")
    if model is not None and not isinstance(model, str):
        raise InvalidError("model: must be a string", field="model")
    tools: Any = body.get("tools")
    if tools is not None and not (
        isinstance(tools, list) and all(map(_is_tool, cast(list[Any], tools)))
    ):
        raise InvalidError(
            "tools: must be a list of {type: function, function: {...}}", field="tools"
        )
    return body


def _is_message(item: Any) -> bool:
    if not isinstance(item, dict) or "role" not in item:
        return False
    calls: Any = cast(Json, item).get("tool_calls")
    return calls is None or (
        isinstance(calls, list) and all(isinstance(c, dict) for c in cast(list[Any], calls))
    )


def _is_tool(item: Any) -> bool:
    return isinstance(item, dict) and isinstance(cast(Json, item).get("function"), dict)


def _who(request: Request, principal: Principal, s: Llm) -> tuple[Who, str | None]:
    """Who pays, from the token alone: an agent's calls its agent budget, anyone else's (an
    admin, the hub) the hub's current state's; a goal only the hub may name."""
    headers = request.headers
    if CALLER_CLASS in headers:
        raise InvalidError(
            "X-Agentcom-Caller-Class: not accepted; the budget is chosen by the token (an "
            "agent's token pays its agent budget, an admin's the hub's current state's)",
            field="X-Agentcom-Caller-Class",
        )
    goal = headers.get(GOAL)
    if principal.role is Role.AGENT:
        if goal is not None:
            raise ForbiddenError(
                "X-Agentcom-Goal: an agent's calls pay its own agent budget; only the hub "
                "names a goal",
                code="goal_not_allowed",
            )
        return Who(principal.name, "agent", principal.agent_id), headers.get(TIER)
    if goal is not None and not GOAL_ID.fullmatch(goal):
        raise InvalidError(
            "X-Agentcom-Goal: must be 1-64 letters, digits, '_', '.', ':' or '-'",
            field="X-Agentcom-Goal",
        )
    return Who(principal.name, f"hub:{s.hub.state}", goal_id=goal), headers.get(TIER)


def _problem(exc: AgentcomError) -> Response:
    return Response(
        json.dumps(exc.as_body()),
        status_code=exc.status,
        media_type="application/json",
        headers=exc.headers(),
    )


CHAT_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "`missing_token` / `unauthorized`"},
    403: {
        "model": Problem,
        "description": "`forbidden`: not an agent's or admin's token; `goal_not_allowed`: an "
        "agent's token naming a goal",
    },
    422: {
        "model": Problem,
        "description": "`invalid_field`: `messages`, `model`, `tools`, `options`, "
        "`max_tokens`, `X-Agentcom-Goal`, or `X-Agentcom-Caller-Class` (refused: the token "
        "chooses the budget)",
    },
    429: {
        "model": BudgetProblem,
        "description": "`budget_exhausted`: the budget named, its limit, its use and the "
        "call's estimate; `Retry-After` until its window closes",
    },
    400: {"model": Problem, "description": "`upstream_bad_request`: the model refused it"},
    502: {"model": Problem, "description": "`upstream_failed`: every candidate failed"},
    503: {"model": Problem, "description": "`no_endpoint_available`, `db_unavailable`"},
}


# the routes read their headers from the raw request (the fast path); declared here for clients
CHAT_HEADERS: dict[str, Any] = {
    "parameters": [
        {
            "name": "X-Agentcom-Tier",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "enum": ["trivial", "standard", "complex"]},
            "description": "Route by this tier (as `model: <tier>` does).",
        },
        {
            "name": "X-Agentcom-Goal",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "pattern": GOAL_ID.pattern},
            "description": "Admin (hub) tokens only: the goal the call is about; its budget "
            "pays too. An agent's token naming one is 403 `goal_not_allowed`.",
        },
    ]
}


# what /v1/chat/completions refuses has OpenAI's `{"error": {...}}` besides the problem fields
OPENAI_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "model": OpenAIBudgetProblem if status == 429 else OpenAIProblem,
        "description": declared["description"],
    }
    for status, declared in CHAT_RESPONSES.items()
}


@routes.post(
    "/api/chat",
    responses=CHAT_RESPONSES,
    openapi_extra=CHAT_HEADERS | chat_body({"options": {"type": "object"}}),
)
async def ollama_chat(request: Request, s: L, principal: Caller) -> Response:
    """Ollama-compatible chat (`stream` defaults to true, as in Ollama); tools both ways.

    `model` may be a model name, `auto`, or a tier (`trivial`/`standard`/`complex`); the tier
    may also come in the `X-Agentcom-Tier` header. The budget is the token's: an agent's
    token pays its agent budget, an admin's the hub's current state's (plus the goal named in
    `X-Agentcom-Goal`, admin only); the call's estimate (prompt + max_tokens) is reserved
    first. The reply carries `routing` (the decision) and `cost_usd`.
    Errors: 403 `goal_not_allowed`, 422 `invalid_field`, 429 `budget_exhausted`,
    503 `no_endpoint_available`, 502 `upstream_failed`.
    """
    body = await _body(request)
    who, tier = _who(request, principal, s)
    call = Call(
        providers.messages_from_ollama(body["messages"]), body.get("tools"), _ollama_options(body)
    )
    model = body.get("model")
    if body.get("stream", True) is False:
        began = time.perf_counter_ns()
        try:
            reply, routing = await s.gateway.chat(call, model, tier, who)
        except AgentcomError as exc:
            return _problem(exc)
        out = providers.ollama_reply_body(
            reply,
            model or routing.model or "",
            time.perf_counter_ns() - began,
            routing.model_dump(mode="json"),
        )
        return Response(json.dumps(out), media_type="application/json")
    return await _streamed(
        s, call, model, tier, who, _problem, _ollama_lines, "application/x-ndjson"
    )


Lines = Callable[[AsyncIterator[Delta], str, Routing], AsyncIterator[bytes]]


async def _streamed(
    s: Llm,
    call: Call,
    model: str | None,
    tier: str | None,
    who: Who,
    problem: Callable[[AgentcomError], Response],
    lines: Lines,
    media_type: str,
) -> Response:
    """A streamed chat in either protocol: `problem` answers a refusal, `lines` encodes."""
    try:
        routing, pieces, finish = await s.gateway.stream(call, model, tier, who)
    except AgentcomError as exc:
        return problem(exc)
    return StreamingResponse(
        lines(pieces, model or routing.model or "", routing),
        media_type=media_type,
        background=BackgroundTask(finish),  # runs after a client that left, too
    )


def _ollama_options(body: Json) -> Json:
    raw: Any = body.get("options") or {}
    if not isinstance(raw, dict):
        raise InvalidError("options: must be a JSON object", field="options")
    options = dict(cast(Json, raw))
    if "num_predict" in options:
        options["max_tokens"] = options.pop("num_predict")
    return {
        k: v
        for k, v in options.items()
        if k in ("temperature", "top_p", "max_tokens", "stop", "seed")
    }


async def _ollama_lines(
    pieces: AsyncIterator[Delta], model: str, routing: Routing
) -> AsyncIterator[bytes]:
    began = time.perf_counter_ns()
    first = True
    try:
        async for delta in pieces:
            yield providers.ollama_chunk(
                delta,
                model,
                time.perf_counter_ns() - began,
                routing.model_dump(mode="json") if first else None,
            )
            first = False
    except Exception as exc:  # noqa: BLE001 - the status line is gone; tell the client in-band
        yield (
            json.dumps({"error": f"upstream failed mid-stream: {type(exc).__name__}"}).encode()
            + b"\n"
        )


@routes.get("/api/tags")
async def ollama_tags(s: L, who: Caller) -> dict[str, Any]:
    """Ollama-compatible model list: every model a healthy endpoint serves (to an agent, its
    own unshared endpoints' too)."""
    return {
        "models": [
            {
                "name": m,
                "model": m,
                "modified_at": "1970-01-01T00:00:00Z",
                "size": 0,
                "digest": "",
                "details": {"endpoint": e.id, "provider": e.provider},
            }
            for m, e in s.registry.models(who.agent_id)
        ]
    }


@routes.post(
    "/v1/chat/completions",
    responses=OPENAI_RESPONSES,
    openapi_extra=CHAT_HEADERS | chat_body({"max_tokens": {"type": "integer"}}),
)
async def openai_chat(request: Request, s: L, principal: Caller) -> Response:
    """OpenAI-compatible chat completions (streaming as SSE with `[DONE]`); tools both ways.

    Same routing rules, headers and errors as `/api/chat`; errors use OpenAI's
    `{"error": {...}}` shape too.
    """
    body = await _body(request)
    who, tier = _who(request, principal, s)
    options = {
        k: body[k] for k in ("temperature", "top_p", "max_tokens", "stop", "seed") if k in body
    }
    if "max_completion_tokens" in body:
        options["max_tokens"] = body["max_completion_tokens"]
    call = Call(body["messages"], body.get("tools"), options)
    model = body.get("model")
    if not body.get("stream"):
        try:
            reply, routing = await s.gateway.chat(call, model, tier, who)
        except AgentcomError as exc:
            return _openai_problem(exc)
        out = providers.openai_reply_body(
            reply, model or routing.model or "", routing.model_dump(mode="json")
        )
        return Response(json.dumps(out), media_type="application/json")
    return await _streamed(s, call, model, tier, who, _openai_problem, _sse, "text/event-stream")


def _openai_problem(exc: AgentcomError) -> Response:
    response = _problem(exc)
    body = exc.as_body()
    response.body = json.dumps(
        body
        | {"error": {"message": exc.detail, "type": exc.code, "code": exc.code}, "code": exc.code}
    ).encode()
    response.headers["content-length"] = str(len(response.body))
    return response


async def _sse(pieces: AsyncIterator[Delta], model: str, routing: Routing) -> AsyncIterator[bytes]:
    chunk_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    first = True
    try:
        async for delta in pieces:
            yield providers.openai_chunk(
                delta,
                model,
                chunk_id,
                created,
                routing.model_dump(mode="json") if first else None,
                first,
            )
            first = False
    except Exception as exc:  # noqa: BLE001 - the status line is gone; tell the client in-band
        yield (
            b"data: "
            + json.dumps(
                {
                    "error": {
                        "message": f"upstream failed mid-stream: {type(exc).__name__}",
                        "type": "upstream_failed",
                    }
                }
            ).encode()
            + b"\n\n"
        )
    yield b"data: [DONE]\n\n"


@routes.get("/v1/models")
async def openai_models(s: L, who: Caller) -> dict[str, Any]:
    """OpenAI-compatible model list: every model a healthy endpoint serves (to an agent, its
    own unshared endpoints' too)."""
    return {
        "object": "list",
        "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": e.id}
            for m, e in s.registry.models(who.agent_id)
        ],
    }


Route = Callable[[Request, Llm, Principal], Awaitable[Response]]
FAST_ROUTES: dict[str, Route] = {"/api/chat": ollama_chat, "/v1/chat/completions": openai_chat}


class FastPath:
    """ASGI middleware: the two chat routes skip FastAPI's dependency solving.

    They call the very functions registered above (which stay the documented routes in
    /docs), with the same auth check; everything else goes to the app. This removes a few
    hundred microseconds per call, most of the gateway's own overhead (bench/gateway_bench.py).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = FAST_ROUTES.get(scope.get("path", "")) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        # FastAPI's own telemetry span and `http.server.request.duration` get the route from
        # its router, which this path skips: name it as the router would (`POST /api/chat`)
        _route_selected(scope=scope, path=scope["path"])
        request = Request(scope, receive)
        state = scope["app"].state
        try:
            principal = await state.verifier.verify(request.headers.get("authorization"))
            principal.require(Role.AGENT)
            response = await route(request, state.llm, principal)
        except AgentcomError as exc:
            response = (_openai_problem if route is openai_chat else _problem)(exc)
        except Exception:  # the app's handler would answer the same problem JSON
            log.exception("http.failed", extra={"path": scope["path"]})
            response = _problem(AgentcomError("internal error; see service logs"))
        await response(scope, receive, send)
