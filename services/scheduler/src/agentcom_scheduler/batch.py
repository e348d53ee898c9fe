"""Many agents' state changes in one go: the hot paths (matching, outcome reports) use these.

`transition_many` is `presence.transition_if` for many agents at once: one guarded UPDATE for
all of them, then their history rows and outbox events as one insert each, in the caller's
transaction. The guard is the same (`states.sources(target)`), the history row and event are
the same, so a batched change cannot be told apart from single ones.
"""

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import TextClause, insert, text
from sqlalchemy.ext.asyncio import AsyncConnection

from agentcom_common import clock, outbox, telemetry
from agentcom_common.contracts.agent import AgentState, AgentTransition
from agentcom_scheduler import ops, states
from agentcom_scheduler.tables import agent_history


@dataclass(frozen=True, slots=True)
class Move:
    """One agent's change, as `transition_if` takes it; `task` sets the assignment it holds."""

    agent_id: str
    source: AgentState
    target: AgentState
    reason: str
    subject: str  # of its event (`subjects.AGENT_*`)
    task: tuple[str, int, datetime, datetime] | None = None  # id, generation, assigned, deadline


_MOVE: Final[TextClause] = text(
    """
UPDATE scheduler.agents a
SET state = v.target, updated_at = now(),
    task_id = CASE v.mode WHEN 'assign' THEN v.task_id WHEN 'clear' THEN NULL ELSE a.task_id END,
    generation = CASE v.mode WHEN 'assign' THEN v.generation WHEN 'clear' THEN NULL
                 ELSE a.generation END,
    assigned_at = CASE v.mode WHEN 'assign' THEN v.assigned_at WHEN 'clear' THEN NULL
                  ELSE a.assigned_at END,
    deadline = CASE v.mode WHEN 'assign' THEN v.deadline WHEN 'clear' THEN NULL
               ELSE a.deadline END,
    blocked_reason = CASE WHEN v.target = 'blocked' THEN v.reason END
FROM jsonb_to_recordset(CAST(:moves AS jsonb)) AS v(
    agent_id text, sources text, target text, mode text, task_id text, generation int,
    assigned_at timestamptz, deadline timestamptz, reason text)
WHERE a.id = v.agent_id AND a.state = ANY(string_to_array(v.sources, ','))
RETURNING a.id
"""
)

_SEEN: Final[TextClause] = text(
    """
UPDATE scheduler.agents a
SET last_seen = now(), resources = COALESCE(v.resources, a.resources),
    last_beat = CASE WHEN v.beat OR a.state = 'offline' THEN now() ELSE a.last_beat END
FROM jsonb_to_recordset(CAST(:agents AS jsonb)) AS v(
    agent_id text, resources jsonb, beat boolean)
WHERE a.id = v.agent_id
RETURNING a.id, a.state
"""
)


_LOCK: Final[TextClause] = text(
    "SELECT id FROM scheduler.agents WHERE id = ANY(CAST(:ids AS text[])) ORDER BY id FOR UPDATE"
)


async def _lock(conn: AsyncConnection, ids: Sequence[str]) -> None:
    """Lock the rows in id order first: an UPDATE ... FROM locks in join order, and two
    transactions locking overlapping agents in different orders would deadlock (the per-batch
    heartbeat refresh takes its rows in id order too)."""
    await conn.execute(_LOCK, {"ids": sorted(ids)})


def _mode(move: Move) -> str:
    if move.task is not None:
        return "assign"
    if move.target in (AgentState.IDLE, AgentState.OFFLINE):  # as store.move: drop the task
        return "clear"
    return "keep"


async def transition_many(
    s: ops.Scheduler, conn: AsyncConnection, moves: Sequence[Move]
) -> set[str]:
    """Apply the moves TRANSITIONS allow now (an agent at most once); returns the agents moved.

    History rows and events of the moved ones commit with the caller's transaction.
    """
    if not moves:
        return set()
    if len({m.agent_id for m in moves}) != len(moves):
        raise ValueError("an agent may move once per transition_many")
    rows: list[dict[str, Any]] = []
    for m in moves:
        row: dict[str, Any] = {
            "agent_id": m.agent_id,
            "sources": ",".join(sorted(states.sources(m.target))),
            "target": m.target.value,
            "mode": _mode(m),
        }
        if m.target is AgentState.BLOCKED:
            row["reason"] = m.reason
        if m.task is not None:
            task_id, generation, assigned_at, deadline = m.task
            row |= {
                "task_id": task_id,
                "generation": generation,
                "assigned_at": assigned_at.isoformat(),
                "deadline": deadline.isoformat(),
            }
        rows.append(row)
    await _lock(conn, [m.agent_id for m in moves])
    result = await conn.execute(_MOVE, {"moves": json.dumps(rows)})
    moved = set(result.scalars())
    done = [m for m in moves if m.agent_id in moved]
    if not done:
        return moved
    if any(m.target is AgentState.IDLE for m in done):  # again after the caller's commit
        s.wakeups.matching(refresh=any(m.source is AgentState.OFFLINE for m in done))
    await conn.execute(
        insert(agent_history),
        [
            {
                "agent_id": m.agent_id,
                "from_state": m.source.value,
                "to_state": m.target.value,
                "reason": m.reason,
            }
            for m in done
        ],
    )
    headers = telemetry.inject_headers()
    now = clock.now()
    await conn.execute(
        s.outbox.insert(),
        [
            {
                "subject": m.subject,
                "payload": AgentTransition(
                    agent_id=m.agent_id,
                    from_state=m.source,
                    to_state=m.target,
                    reason=m.reason,
                    at=now,
                )
                .model_dump_json()
                .encode(),
                "headers": headers,
            }
            for m in done
        ],
    )
    await conn.execute(text(f"NOTIFY {outbox.channel(s.outbox)}"))
    return moved


async def seen_many(
    conn: AsyncConnection,
    resources: dict[str, dict[str, object] | None],
    beats: Collection[str] = (),
) -> dict[str, AgentState]:
    """Note that these agents were heard from (a heartbeat's resources where given, else the
    stored ones kept): one statement. Those in `beats` sent a heartbeat or hello (presence:
    `last_beat`; an offline agent's clock starts with any report). Returns each known agent's
    state; unknown ids are absent."""
    if not resources:
        return {}
    rows = [
        {"agent_id": a, "resources": r, "beat": a in beats} for a, r in sorted(resources.items())
    ]
    await _lock(conn, list(resources))
    result = await conn.execute(_SEEN, {"agents": json.dumps(rows)})
    return {r.id: AgentState(r.state) for r in result.all()}
