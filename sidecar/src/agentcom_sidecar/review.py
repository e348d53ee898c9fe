"""A second model's review of a change, asked through the llm-registry gateway.

After the pre-publication scan passed and before the push, the diff (as `changes.Change` holds
it, cut to `max_diff_chars`) goes to the gateway's Ollama `/api/chat` with the agent's token,
so the call is routed, metered and budgeted like every other model call of this agent. The
reviewer is asked for JSON (`{"verdict": "approve" | "request_changes" | "reject", "comments":
[...]}`). It must not be the model that wrote the change: `review.models` are tried in order,
skipping the writer's name, and a reply the gateway's routing says came from the writer is not
counted (the next candidate is asked). Whatever goes wrong (no gateway, a refusal, a reply that
is not that JSON) is a `DiffReview` with no verdict and a note: the risk tier then counts the
change as unreviewed (`RiskRules.unreviewed_tier`), never as approved.
"""

import json
import logging
import re
from collections.abc import Sequence
from typing import Any, cast, get_args

import httpx

from agentcom_common import telemetry
from agentcom_common.contracts.delivery import DiffReview, Verdict
from agentcom_common.contracts.task import TaskView
from agentcom_sidecar.config import ReviewConfig

log = logging.getLogger(__name__)

PROMPT = """You review a change another model made to a repository, before it is published.
Say whether it may be merged. Answer with one JSON object and nothing else:
{"verdict": "approve" | "request_changes" | "reject", "comments": ["...", ...]}
approve: correct, small, tested, safe to merge. request_changes: fixable problems (name them).
reject: wrong, harmful or out of scope (say why). At most 5 comments, one sentence each."""
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


async def ask(
    gateway: str | None,
    token: str,
    task: TaskView,
    diff: str,
    writer: str | None,
    config: ReviewConfig,
) -> DiffReview:
    """The first usable review from a model other than `writer`, or one saying why none is."""
    if gateway is None:
        return DiffReview(writer=writer, note="no gateway configured (gateway_url, hub_urls)")
    wanted = [m for m in config.models if m != writer]
    if not wanted:
        return DiffReview(writer=writer, note=f"every review model is the writer ({writer})")
    note = "no review model answered"
    async with httpx.AsyncClient(timeout=config.timeout) as http:
        for model in wanted:
            review = await _ask_one(http, gateway, token, task, diff, model, writer, config)
            if review.verdict is not None:
                return review
            note = review.note or note
    return DiffReview(writer=writer, note=note[:500])


async def _ask_one(
    http: httpx.AsyncClient,
    gateway: str,
    token: str,
    task: TaskView,
    diff: str,
    model: str,
    writer: str | None,
    config: ReviewConfig,
) -> DiffReview:
    body = {
        "model": model,
        "stream": False,
        "format": "json",
        "messages": [
            {"role": "system", "content": PROMPT},
            {"role": "user", "content": _request(task, diff, config.max_diff_chars)},
        ],
    }
    headers = telemetry.inject_headers(
        {"Authorization": f"Bearer {token}", "X-AgentCom-Task": task.id}
    )
    try:
        said = await http.post(gateway.rstrip("/") + "/api/chat", json=body, headers=headers)
    except httpx.HTTPError as exc:
        return DiffReview(writer=writer, note=f"the gateway is unreachable: {type(exc).__name__}")
    reply = _json(said.text)
    if said.status_code >= 400 or reply is None:
        code = str(reply.get("error", "")) if reply else ""
        return DiffReview(writer=writer, note=f"the gateway answered {said.status_code} {code}")
    routing = reply.get("routing")
    chosen = cast(dict[str, Any], routing).get("model") if isinstance(routing, dict) else None
    answered = str(chosen or reply.get("model") or model)[:200]
    if writer is not None and answered == writer:
        log.warning("review.same_model", extra={"model": answered})
        return DiffReview(writer=writer, note=f"{model} was routed to the writer ({writer})")
    message = reply.get("message")
    content = cast(dict[str, Any], message).get("content") if isinstance(message, dict) else None
    return _parsed(str(content or ""), answered, writer)


def _request(task: TaskView, diff: str, limit: int) -> str:
    cut = "" if len(diff) <= limit else f"\n[diff cut at {limit} of {len(diff)} characters]"
    return (
        f"Task: {task.description[:2000]}\n\n"
        f"The change (unified diff, no context lines):\n{diff[:limit]}{cut}"
    )


def _parsed(content: str, model: str, writer: str | None) -> DiffReview:
    """The reviewer's JSON (bare or in a code fence) as a review; anything else is noted."""
    fenced = _FENCE.search(content)
    answer = _json(fenced[1] if fenced else content)
    verdict = answer.get("verdict") if answer else None
    if answer is None or verdict not in get_args(Verdict):
        return DiffReview(
            model=model, writer=writer, note=f"{model}'s reply is not a verdict in JSON"
        )
    comments: object = answer.get("comments")
    listed: Sequence[object] = (
        cast(Sequence[object], comments) if isinstance(comments, list) else ()
    )
    return DiffReview(
        verdict=cast(Verdict, verdict),
        comments=[str(c)[:500] for c in listed[:20]],
        model=model,
        writer=writer,
    )


def _json(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return cast(dict[str, Any], value) if isinstance(value, dict) else None
