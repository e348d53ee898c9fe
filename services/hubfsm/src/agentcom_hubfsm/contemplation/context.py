"""What a contemplation cycle shows the model, gathered (I/O only): the repo at HEAD, its
out-of-scope list, the hub's own history (recent moves, failed goals, healing runs), the
proposals already pending and the reasons of the last rejections, and the scalability
analysis's inputs (the health monitor's samples, the queue's tasks, the fleet, the endpoints,
over NATS RPC: the hub never reads another service's tables).
"""

import asyncio
from dataclasses import dataclass
from typing import Any, TypeVar

from nats.aio.client import Client
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agentcom_common import clock, micro
from agentcom_common.contracts.agent import AgentList, AgentView, ListAgents
from agentcom_common.contracts.hub import GoalState, HubMove
from agentcom_common.contracts.llm import EndpointList, ListEndpoints
from agentcom_common.contracts.proposal import ProposalState, ProposalView
from agentcom_common.contracts.task import ListTasks, TaskList, TaskState, TaskView
from agentcom_common.errors import AgentcomError
from agentcom_hubfsm.brain import store as brain_store
from agentcom_hubfsm.contemplation import analysis, store
from agentcom_hubfsm.healing import store as healing_store
from agentcom_hubfsm.repocache import RepoCache, Snapshot
from agentcom_hubfsm.settings import HubSettings
from agentcom_hubfsm.tables import goal_tasks, goals, health

T = TypeVar("T")
FAILED = (GoalState.FAILED.value, GoalState.NEEDS_REVIEW.value)


@dataclass(frozen=True, slots=True)
class Context:
    repo: Snapshot
    out_of_scope: tuple[str, ...]
    moves: list[HubMove]
    failures: list[str]  # "goal title: reason"
    healing: list[str]  # "started_at outcome: report"
    pending: list[ProposalView]
    rejected: list[ProposalView]
    scalability: analysis.Scalability
    missing: dict[str, str]  # part -> why it is not in the analysis


def scope_lines(text: str | None) -> list[str]:
    """The out-of-scope file's topics: one a line, `#` starts a comment."""
    if text is None:
        return []
    return [line for raw in text.splitlines() if (line := raw.split("#", 1)[0].strip())]


async def _ask(missing: dict[str, str], name: str, call: Any) -> Any:
    try:
        return await call
    except AgentcomError as exc:
        missing[name] = f"{exc.code}: {exc.detail}"
    except Exception as exc:  # noqa: BLE001 - NATS itself away: that part is left out
        missing[name] = f"{type(exc).__name__}: NATS request failed"
    return None


async def _tasks(nc: Client, state: TaskState, timeout: float) -> list[TaskView]:
    page = await micro.call(
        nc, "queue", "list", ListTasks(state=state, limit=500), TaskList, timeout=timeout
    )
    return page.tasks


async def _history(conn: AsyncConnection, n: int) -> tuple[list[HubMove], list[str], list[str]]:
    moves, _ = await brain_store.page_history(conn, cursor=None, limit=n)
    failed = await conn.execute(
        select(goals.c.title, goals.c.state, goals.c.reason)
        .where(goals.c.state.in_(FAILED))
        .order_by(goals.c.updated_at.desc())
        .limit(n)
    )
    runs, _ = await healing_store.page(conn, cursor=None, limit=n)
    return (
        moves,
        [f"{r.title} ({r.state}): {r.reason}" for r in failed],
        [f"{r.started_at:%Y-%m-%d %H:%M} {r.outcome or 'running'}: {r.report}" for r in runs],
    )


async def gather(
    engine: AsyncEngine, nc: Client, cache: RepoCache, settings: HubSettings, repo: str
) -> Context:
    n, timeout = settings.hub_contemplation_history, settings.hub_health_timeout.total_seconds()
    snapshot = await cache.snapshot(repo)
    listed = await cache.blob(repo, settings.hub_contemplation_out_of_scope_file)
    scope = (*settings.hub_contemplation_out_of_scope, *scope_lines(listed))
    async with engine.connect() as conn:
        moves, failures, healing_runs = await _history(conn, n)
        pending = await store.recent(conn, ProposalState.PENDING, 50)
        rejected = await store.recent(conn, ProposalState.REJECTED, n)
        kept: list[analysis.Sample] | None = (
            await conn.execute(select(health.c.samples))
        ).scalar_one_or_none()
        spent = (
            await conn.execute(select(func.coalesce(func.sum(goals.c.cost_usd), 0.0)))
        ).scalar()
        done = (
            await conn.execute(
                select(func.count()).where(goal_tasks.c.state == TaskState.COMPLETED.value)
            )
        ).scalar()
    missing: dict[str, str] = {}
    queued, completed, fleet, endpoints = await asyncio.gather(
        _ask(missing, "queued tasks", _tasks(nc, TaskState.QUEUED, timeout)),
        _ask(missing, "completed tasks", _tasks(nc, TaskState.COMPLETED, timeout)),
        _ask(
            missing,
            "agents",
            micro.call(nc, "scheduler", "agents", ListAgents(), AgentList, timeout=timeout),
        ),
        _ask(
            missing,
            "endpoints",
            micro.call(nc, "llm", "endpoints", ListEndpoints(), EndpointList, timeout=timeout),
        ),
    )
    agents: list[AgentView] | None = None if fleet is None else fleet.agents
    found = analysis.analyse(
        clock.now(),
        samples=kept or [],
        queued=queued,
        completed=completed,
        agents=agents,
        endpoints=endpoints,
        goal_cost_usd=float(spent or 0.0),
        goal_tasks_done=int(done or 0),
    )
    return Context(
        snapshot, scope, moves, failures, healing_runs, pending, rejected, found, missing
    )
