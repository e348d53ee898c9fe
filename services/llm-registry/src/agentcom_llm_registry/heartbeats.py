"""Sidecar heartbeats: the durable consumer on REPORTS, each heartbeat's host resources, and the
endpoints learnt from them (a sidecar's local Ollama, its agent's alone until an admin shares
it)."""

import json
import time
from typing import Any, cast

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from agentcom_common import clock, consumer, subjects
from agentcom_common.errors import ConflictError, InvalidError
from agentcom_llm_registry import store
from agentcom_llm_registry.ops import Llm, endpoint_from, endpoint_of
from agentcom_llm_registry.providers import as_list, as_obj
from agentcom_llm_registry.registry import Endpoint, HostResources

CONSUMER = "llm-registry-heartbeats"


async def consume(s: Llm, js: JetStreamContext) -> None:
    """Our own durable consumer on REPORTS: heartbeats are read as raw JSON, the rest acked;
    a report that cannot be read is refused once (`agentcom_common.consumer`)."""

    async def report(msg: Msg) -> None:
        speaker = consumer.speaker_of(msg.subject)
        data: Any = json.loads(msg.data)  # too deep: RecursionError, refused as input
        if speaker is None or not isinstance(data, dict):
            return  # not a report of an agent: nothing for us
        body = as_obj(data)
        if body.get("kind") != "heartbeat":
            return
        sent = msg.metadata.timestamp
        age = (clock.now() - sent).total_seconds() if sent else 0.0
        await take(s, speaker, body, age)

    await consumer.consume(
        js,
        subjects.REPORTS_STREAM,
        subjects.REPORTS_ALL,
        CONSUMER,
        consumer.Policy.of(s.settings),
        report,
    )


async def take(s: Llm, agent_id: str, data: dict[str, Any], age: float = 0.0) -> None:
    """Join a heartbeat's host resources; learn the sidecar's local Ollama if it has one.

    `agent_id` is the agent of the subject it came on (its NATS user may publish there
    alone); a body naming another agent is refused. The endpoint learnt serves that agent
    alone until an admin shares it, and is not probed until then. `age` (seconds since the
    sidecar sent it) keeps a replayed old heartbeat from looking fresh: scoring ignores
    resources older than `llm_resource_stale`.
    """
    named = data.get("agent_id")
    if named is not None and named != agent_id:
        raise InvalidError(
            f"a heartbeat on {agent_id}'s subject names agent {named!r}",
            code="wrong_agent",
            field="agent_id",
        )
    host = str(data.get("host") or agent_id)[:200]
    s.registry.hosts[host] = HostResources(
        host=host,
        agent_id=agent_id,
        cpu_percent=_num(data.get("cpu_percent")),
        ram_percent=_num(data.get("ram_percent")),
        vram_percent=_num(data.get("vram_percent")),
        load=_num(data.get("load")),
        gpus=[cast(dict[str, Any], g) for g in as_list(data.get("gpus")) if isinstance(g, dict)][
            :16
        ],
        at=time.monotonic() - max(0.0, age),
    )
    url = data.get("ollama_url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        return
    await _learn(s, agent_id, host, url.rstrip("/"), data)


async def _learn(s: Llm, agent_id: str, host: str, url: str, data: dict[str, Any]) -> None:
    endpoint_id = f"sidecar-{agent_id}"[:64]
    models = [str(m)[:200] for m in as_list(data.get("models")) if isinstance(m, str)][:200]
    known = s.registry.get(endpoint_id)
    if (
        known is not None
        and known.owner == agent_id
        and known.base_url == url
        and known.host == host
        and known.models == models
    ):
        return
    values = {
        "id": endpoint_id,
        "provider": "ollama",
        "base_url": url[:500],
        "api_key": None,
        "classes": ["local"],
        "models": models,
        "host": host,
        "source": f"sidecar:{agent_id}",
        "owner": agent_id,
    }
    async with s.engine.begin() as conn:
        learnt = await store.learn_endpoint(conn, values)
        if learnt is None:
            raise InvalidError(
                f"endpoint {endpoint_id} was not learnt from {agent_id}; left as it is",
                code="endpoint_taken",
            )
        fresh, shared = learnt
        if fresh:
            await s.event(
                conn,
                subjects.LLM_ENDPOINT_ADDED,
                endpoint_id,
                "ollama",
                "unknown",
                f"reported by sidecar {agent_id}; serves it alone until shared",
            )
    s.put(endpoint_from(values | {"shared": shared}))


async def share(s: Llm, endpoint_id: str) -> Endpoint:
    """Let every caller use an endpoint learnt from an agent; probed from now on."""
    async with s.engine.begin() as conn:
        row = await store.share_endpoint(conn, endpoint_id)
        if row is None:
            s.find(endpoint_id)  # 404 when there is none at all
            raise ConflictError(
                f"endpoint {endpoint_id} was added by hand: every caller may use it already",
                code="not_learnt",
            )
        await s.event(
            conn,
            subjects.LLM_ENDPOINT_SHARED,
            endpoint_id,
            row.provider,
            "unknown",
            f"shared by an admin (learnt from agent {row.owner})",
        )
    return s.put(endpoint_of(row))


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
