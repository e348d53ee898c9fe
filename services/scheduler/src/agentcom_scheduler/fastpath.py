"""Matching's two statements, each one round trip on an asyncpg connection the matcher holds.

Matching runs once per submitted task under load (hundreds of times a second). Through the
engine each pass was two pool checkouts with their pings, a read, and a transaction of
five statements (lock, guarded UPDATE, history insert, outbox insert, NOTIFY): about a dozen
round trips and the SQLAlchemy statement set-up of each. Here a pass is one read and one
statement that does all of the move at once (a single statement is atomic: it commits or
rolls back as a whole), on a connection checked out once for the matcher's life.

`assign` is `batch.transition_many` for idle -> assigned, spelled as one statement: the same
guard (`states.sources`), the same history row, the same event payload (built by the contract
in Python, stored only for the agents that moved). No NOTIFY: the caller wakes this process's
relay after the statement (`ops.Scheduler.relay`); other relays find the rows on their sweep.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from agentcom_common import clock, subjects, telemetry
from agentcom_common.contracts.agent import AgentState, AgentTransition
from agentcom_scheduler import states

IDLE: Final = """
SELECT p.capabilities, p.repos, x.id, x.refused
FROM (
    SELECT capabilities, repos, min(updated_at) AS first
    FROM scheduler.agents
    WHERE state = 'idle'
    GROUP BY capabilities, repos
) p
CROSS JOIN LATERAL (
    SELECT a.id, a.updated_at, ARRAY(
        SELECT r.task_id FROM scheduler.refusals r WHERE r.agent_id = a.id
        ORDER BY r.at DESC LIMIT 1000) AS refused
    FROM scheduler.agents a
    WHERE a.state = 'idle' AND a.capabilities = p.capabilities AND a.repos = p.repos
    ORDER BY a.updated_at, a.id
    LIMIT $1
) x
ORDER BY p.first, p.capabilities, p.repos, x.updated_at, x.id
"""
"""Both halves walk the partial index `agents_idle` (migration 0007): the profiles in index
order, then each profile's longest idle agents, no sort of all idle agents. `refused` is the
tasks the agent refused for good (newest 1,000; an older one offered again is refused again,
without a retry), one primary-key range read per agent, empty for nearly all."""

ASSIGN: Final = """
WITH v AS (
    SELECT * FROM jsonb_to_recordset($1::jsonb) AS v(
        agent_id text, task_id text, generation int, assigned_at timestamptz,
        deadline timestamptz, reason text, payload text)
), locked AS (
    SELECT a.id FROM scheduler.agents a
    WHERE a.id IN (SELECT agent_id FROM v) AND a.state = ANY($2::text[])
    ORDER BY a.id
    FOR UPDATE
), moved AS (
    UPDATE scheduler.agents a
    SET state = 'assigned', updated_at = now(), task_id = v.task_id,
        generation = v.generation, assigned_at = v.assigned_at, deadline = v.deadline
    FROM v
    WHERE a.id = v.agent_id AND a.id IN (SELECT id FROM locked) AND a.state = ANY($2::text[])
    RETURNING a.id, v.reason, v.payload
), history AS (
    INSERT INTO scheduler.agent_history (agent_id, from_state, to_state, reason)
    SELECT id, 'idle', 'assigned', reason FROM moved
), events AS (
    INSERT INTO scheduler.outbox (subject, payload, headers)
    SELECT $3, convert_to(payload, 'UTF8'), $4::json FROM moved
)
SELECT id FROM moved
"""
"""Lock the rows in id order first (as `batch._lock`), then move the ones still idle."""

_SOURCES: Final = sorted(s.value for s in states.sources(AgentState.ASSIGNED))


@dataclass(frozen=True, slots=True)
class Assignment:
    agent_id: str
    task_id: str
    generation: int
    deadline: datetime


Profile = tuple[list[str], list[str], list[str]]
"""What a claim asks for: the agents' capabilities, their repos, and the tasks not to offer."""


async def idle(raw: Any, per_profile: int) -> list[tuple[Profile, list[str]]]:
    """Idle agents by profile (capabilities, repos): up to `per_profile` of each, longest idle
    first; the profile whose agent has waited longest comes first. An agent that refused
    tasks for good is a profile of its own (with those tasks excluded): one claim serves
    agents that may all take the same tasks."""
    rows: Sequence[Any] = await raw.fetch(IDLE, per_profile)
    out: list[tuple[Profile, list[str]]] = []
    for row in rows:
        refused = list(row["refused"])
        profile = (list(row["capabilities"]), list(row["repos"]), refused)
        if out and not refused and out[-1][0] == profile:
            out[-1][1].append(row["id"])
        else:
            out.append((profile, [row["id"]]))
    return out


async def assign(raw: Any, outbox_schema: str, moves: Sequence[Assignment]) -> set[str]:
    """Move idle agents to `assigned` with their task, history row and `agent.assigned` event,
    in one statement; returns the agents moved (one that is no longer idle is left as it is)."""
    if not moves:
        return set()
    if outbox_schema != "scheduler":
        raise ValueError("the statement writes scheduler.outbox")
    now = clock.now()
    rows = [
        {
            "agent_id": m.agent_id,
            "task_id": m.task_id,
            "generation": m.generation,
            "assigned_at": now.isoformat(),
            "deadline": m.deadline.isoformat(),
            "reason": (reason := f"task {m.task_id} generation {m.generation}"),
            "payload": AgentTransition(
                agent_id=m.agent_id,
                from_state=AgentState.IDLE,
                to_state=AgentState.ASSIGNED,
                reason=reason,
                at=now,
            ).model_dump_json(),
        }
        for m in moves
    ]
    result: Sequence[Any] = await raw.fetch(
        ASSIGN,
        json.dumps(rows),
        _SOURCES,
        subjects.AGENT_ASSIGNED,
        json.dumps(telemetry.inject_headers()),
    )
    return {r["id"] for r in result}
