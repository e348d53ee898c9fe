"""Claiming tasks: one, many for one agent, one each for several agents alike. Each claim is
one statement (update, history rows, events) in `store_batch`.
"""

import time
from collections.abc import Sequence
from typing import Any

from agentcom_common import telemetry
from agentcom_common.contracts.task import (
    TaskView,
)
from agentcom_common.errors import (
    InvalidError,
)
from agentcom_common.repos import repo_keys
from agentcom_queue import meters, store_batch
from agentcom_queue.ops.core import Queue, views


async def claim(
    q: Queue, agent_id: str, capabilities: list[str], agent_repos: list[str]
) -> TaskView | None:
    """Assign the best eligible task (lane, then age) to `agent_id`, or None."""
    tasks = await claim_many(q, agent_id, capabilities, agent_repos, 1)
    return tasks[0] if tasks else None


async def claim_many(
    q: Queue, agent_id: str, capabilities: list[str], agent_repos: list[str], limit: int
) -> list[TaskView]:
    """Assign up to `limit` eligible tasks to `agent_id` (lane, then age), each as `claim` would.

    One statement does the whole claim (update, history rows, events), so it runs as its own
    transaction: no BEGIN/COMMIT round trips.
    """
    agent_repos = repo_keys(agent_repos)  # tasks store the key: compare keys
    headers = telemetry.inject_headers()
    started = time.perf_counter()
    rows: Sequence[Any]
    if q.claims is not None:  # the hot path: no SQLAlchemy layers, no pre-ping round trips
        async with q.claims.acquire() as driver:
            rows = await store_batch.claim_direct(
                driver, agent_id, capabilities, agent_repos, limit, headers
            )
    else:
        async with q.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            rows = await store_batch.claim(
                conn, agent_id, capabilities, agent_repos, limit, headers
            )
    meters.time_claim("claim", time.perf_counter() - started, bool(rows))
    if rows:
        q.relay.wake()
        meters.count_assigned(rows)
    return views(rows)


async def claim_for_agents(
    q: Queue,
    agent_ids: list[str],
    capabilities: list[str],
    agent_repos: list[str],
    exclude: Sequence[str] = (),
) -> list[TaskView]:
    """One task each for several agents alike, best task to the first agent; one statement.

    Fewer tasks than agents when fewer are eligible. Each is assigned as `claim` would assign it.
    Tasks in `exclude` are skipped (the scheduler names the tasks an agent refused for good).
    """
    if len(set(agent_ids)) != len(agent_ids):
        raise InvalidError("agent_ids lists an agent twice", field="agent_ids")
    agent_repos = repo_keys(agent_repos)
    headers = telemetry.inject_headers()
    started = time.perf_counter()
    rows: Sequence[Any]
    if q.claims is not None:
        async with q.claims.acquire() as driver:
            rows = await store_batch.claim_agents(
                None, driver, agent_ids, capabilities, agent_repos, headers, exclude
            )
    else:
        async with q.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            rows = await store_batch.claim_agents(
                conn, None, agent_ids, capabilities, agent_repos, headers, exclude
            )
    meters.time_claim("claim_agents", time.perf_counter() - started, bool(rows))
    if rows:
        q.relay.wake()
        meters.count_assigned(rows)
    return views(rows)
