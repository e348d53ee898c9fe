"""What the health assessment reads from the running system, over NATS RPC only (the hub never
touches another service's tables): each service's readiness, the tasks agents hold, the fleet,
the LLM endpoints and the queue's counts. I/O only; `judge` decides.

A service that does not answer leaves its part `None` and its readiness says why: the judge
then reports it degraded instead of guessing about what it could not see.
"""

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from nats.aio.client import Client

from agentcom_common import micro
from agentcom_common.contracts.agent import AgentList, AgentView, ListAgents
from agentcom_common.contracts.llm import EndpointList, ListEndpoints
from agentcom_common.contracts.system import Health
from agentcom_common.contracts.task import (
    ListTasks,
    QueueStats,
    StatsRequest,
    TaskList,
    TaskState,
    TaskView,
)
from agentcom_common.errors import AgentcomError
from agentcom_common.service import HealthRequest

SERVICES: tuple[str, ...] = ("queue", "scheduler", "llm")  # RPC groups; `llm` is the llm-registry
HELD = (TaskState.ASSIGNED, TaskState.WORKING)  # an agent holds the task
MAX_TASKS = 5000  # held tasks read per assessment; a fleet holds one each
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Seen:
    ready: dict[str, Health | str]  # per service: its readiness, or why it did not answer
    held: list[TaskView] | None = None
    agents: list[AgentView] | None = None
    endpoints: EndpointList | None = None
    stats: QueueStats | None = None
    errors: dict[str, str] = field(default_factory=dict[str, str])  # part -> why it is missing


async def _readiness(nc: Client, service: str, timeout: float) -> Health | str:
    try:
        return await micro.call(nc, service, "health", HealthRequest(), Health, timeout=timeout)
    except AgentcomError as exc:
        return exc.detail
    except Exception as exc:  # noqa: BLE001 - NATS itself away: the service is not reachable
        return f"{type(exc).__name__}: NATS request failed"


async def _held(nc: Client, timeout: float) -> list[TaskView]:
    found: list[TaskView] = []
    for state in HELD:
        cursor: str | None = None
        while len(found) < MAX_TASKS:
            page = await micro.call(
                nc,
                "queue",
                "list",
                ListTasks(state=state, cursor=cursor, limit=500),
                TaskList,
                timeout=timeout,
            )
            found += page.tasks
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    return found


async def _ask(errors: dict[str, str], name: str, ask: Coroutine[Any, Any, T]) -> T | None:
    try:
        return await ask
    except AgentcomError as exc:  # it answered readiness but not this: say so, judge the rest
        errors[name] = f"{exc.code}: {exc.detail}"
        return None


async def gather(nc: Client, timeout: float) -> Seen:
    answers = await asyncio.gather(*(_readiness(nc, s, timeout) for s in SERVICES))
    ready = dict(zip(SERVICES, answers, strict=True))
    up = {s for s, r in ready.items() if isinstance(r, Health)}
    errors: dict[str, str] = {}
    held = stats = fleet = endpoints = None
    if "queue" in up:
        held = await _ask(errors, "held", _held(nc, timeout))
        stats = await _ask(
            errors,
            "stats",
            micro.call(nc, "queue", "stats", StatsRequest(), QueueStats, timeout=timeout),
        )
    if "scheduler" in up:
        fleet = await _ask(
            errors,
            "agents",
            micro.call(nc, "scheduler", "agents", ListAgents(), AgentList, timeout=timeout),
        )
    if "llm" in up:
        endpoints = await _ask(
            errors,
            "endpoints",
            micro.call(nc, "llm", "endpoints", ListEndpoints(), EndpointList, timeout=timeout),
        )
    return Seen(
        ready=ready,
        held=held,
        agents=None if fleet is None else fleet.agents,
        endpoints=endpoints,
        stats=stats,
        errors=errors,
    )
