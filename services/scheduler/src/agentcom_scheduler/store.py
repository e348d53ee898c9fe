"""Every SQL statement on the `scheduler` schema. The only importer of tables.py."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, case, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from agentcom_common.contracts.agent import AgentState
from agentcom_scheduler import states
from agentcom_scheduler.tables import agent_history, agents, refusals

AgentRow = Row[Any]


async def insert_agent(conn: AsyncConnection, values: dict[str, Any]) -> AgentRow | None:
    """None when the id is taken."""
    stmt = (
        pg_insert(agents)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[agents.c.id])
        .returning(*agents.c)
    )
    row = (await conn.execute(stmt)).one_or_none()
    if row is not None:
        await record(conn, row.id, None, AgentState(row.state), "registered")
    return row


async def record(
    conn: AsyncConnection, agent_id: str, source: AgentState | None, target: AgentState, reason: str
) -> None:
    await conn.execute(
        insert(agent_history).values(
            agent_id=agent_id,
            from_state=source.value if source else None,
            to_state=target.value,
            reason=reason,
        )
    )


async def fetch(conn: AsyncConnection, agent_id: str, *, lock: bool = False) -> AgentRow | None:
    stmt = select(agents).where(agents.c.id == agent_id)
    if lock:
        stmt = stmt.with_for_update()
    return (await conn.execute(stmt)).one_or_none()


async def set_credentials(
    conn: AsyncConnection, agent_id: str, token_id: str, nats_secret_hash: str
) -> AgentRow:
    stmt = (
        update(agents)
        .where(agents.c.id == agent_id)
        .values(token_id=token_id, nats_secret_hash=nats_secret_hash, updated_at=func.now())
        .returning(*agents.c)
    )
    return (await conn.execute(stmt)).one()


async def all_agents(conn: AsyncConnection) -> Sequence[AgentRow]:
    return (await conn.execute(select(agents).order_by(agents.c.created_at))).all()


async def ids(conn: AsyncConnection) -> set[str]:
    return set((await conn.execute(select(agents.c.id))).scalars())


async def remove(conn: AsyncConnection, agent_id: str) -> AgentRow | None:
    stmt = delete(agents).where(agents.c.id == agent_id).returning(*agents.c)
    return (await conn.execute(stmt)).one_or_none()


async def history(conn: AsyncConnection, agent_id: str) -> Sequence[Row[Any]]:
    stmt = (
        select(agent_history)
        .where(agent_history.c.agent_id == agent_id)
        .order_by(agent_history.c.id)
    )
    return (await conn.execute(stmt)).all()


async def seen(
    conn: AsyncConnection,
    agent_id: str,
    resources: dict[str, object] | None = None,
    *,
    beat: bool = False,
) -> AgentRow | None:
    """Note that the agent was heard from (with its host resources from a heartbeat); the row
    (its state and assignment are as before: only `last_seen` changed), None if unknown. One
    statement, and the row stays locked until the transaction ends.

    `beat`: the report is a heartbeat or hello, which also moves `last_beat` (presence); an
    offline agent's first report of any kind starts its presence clock too.
    """
    values: dict[str, object] = {
        "last_seen": func.now(),
        "last_beat": func.now()
        if beat
        else case(
            (agents.c.state == AgentState.OFFLINE.value, func.now()), else_=agents.c.last_beat
        ),
    }
    if resources is not None:
        values["resources"] = resources
    stmt = update(agents).where(agents.c.id == agent_id).values(**values).returning(*agents.c)
    return (await conn.execute(stmt)).one_or_none()


async def move(
    conn: AsyncConnection, agent_id: str, to: AgentState, values: dict[str, Any] | None = None
) -> bool:
    """Move an agent along TRANSITIONS (the WHERE is the guard); False if it may not.

    Entering idle or offline drops the assignment the agent held.
    """
    if to in (AgentState.IDLE, AgentState.OFFLINE):
        values = {"task_id": None, "generation": None, "assigned_at": None, "deadline": None} | (
            values or {}
        )
    stmt = (
        update(agents)
        .where(agents.c.id == agent_id, agents.c.state.in_(sorted(states.sources(to))))
        .values(state=to.value, updated_at=func.now(), **(values or {}))
        .returning(agents.c.state)
    )
    return (await conn.execute(stmt)).one_or_none() is not None


async def holding(conn: AsyncConnection, agent_id: str) -> tuple[str, int] | None:
    """The assignment (task, generation) the agent holds now, if any."""
    stmt = select(agents.c.task_id, agents.c.generation).where(agents.c.id == agent_id)
    row = (await conn.execute(stmt)).one_or_none()
    if row is None or row.task_id is None or row.generation is None:
        return None
    return (row.task_id, row.generation)


async def holder(conn: AsyncConnection, task_id: str, generation: int) -> str | None:
    """The agent holding this assignment (task at this generation), if any."""
    stmt = select(agents.c.id).where(agents.c.task_id == task_id, agents.c.generation == generation)
    return (await conn.execute(stmt)).scalar_one_or_none()


async def silent_since(conn: AsyncConnection, cutoff: datetime) -> list[AgentRow]:
    """Agents not offline whose last heartbeat (or hello) is older than `cutoff`, locked for
    the sweep."""
    stmt = (
        select(agents)
        .where(agents.c.state != AgentState.OFFLINE.value)
        .where((agents.c.last_beat < cutoff) | agents.c.last_beat.is_(None))
        .with_for_update(skip_locked=True)
    )
    return list((await conn.execute(stmt)).all())


async def oldest_beat(conn: AsyncConnection) -> datetime | None:
    """The oldest last heartbeat of an agent not offline: the next one to fall silent."""
    stmt = select(func.min(agents.c.last_beat)).where(agents.c.state != AgentState.OFFLINE.value)
    return (await conn.execute(stmt)).scalar_one_or_none()


async def unaccepted_since(conn: AsyncConnection, cutoff: datetime) -> list[AgentRow]:
    """Agents still `assigned` (never accepted) since before `cutoff`, locked for the sweep."""
    stmt = (
        select(agents)
        .where(agents.c.state == AgentState.ASSIGNED.value, agents.c.assigned_at < cutoff)
        .with_for_update(skip_locked=True)
    )
    return list((await conn.execute(stmt)).all())


async def overdue(conn: AsyncConnection, now: datetime) -> list[AgentRow]:
    """Agents holding an assignment past its deadline, locked for the sweep."""
    stmt = (
        select(agents)
        .where(
            agents.c.state.in_([AgentState.ASSIGNED.value, AgentState.WORKING.value]),
            agents.c.deadline < now,
        )
        .with_for_update(skip_locked=True)
    )
    return list((await conn.execute(stmt)).all())


async def refuse(
    conn: AsyncConnection, agent_id: str, task_id: str, code: str, reason: str
) -> None:
    """Note that the agent can never take the task (a repeat changes nothing)."""
    stmt = (
        pg_insert(refusals)
        .values(agent_id=agent_id, task_id=task_id, code=code, reason=reason)
        .on_conflict_do_nothing(index_elements=[refusals.c.agent_id, refusals.c.task_id])
    )
    await conn.execute(stmt)


async def forget_refusals(conn: AsyncConnection, agent_id: str) -> None:
    """A sidecar saying hello may have a new config: what it refused may be offered again."""
    await conn.execute(delete(refusals).where(refusals.c.agent_id == agent_id))


async def set_supervisor(conn: AsyncConnection, agent_id: str, supervisor: str | None) -> None:
    """What its hello says runs the sidecar (None: an older sidecar that does not say)."""
    value = supervisor[:64] if supervisor else None
    await conn.execute(update(agents).where(agents.c.id == agent_id).values(supervisor=value))


async def refusals_of_task(conn: AsyncConnection, task_id: str) -> dict[str, str]:
    """The agents that refused the task for good, with their reasons."""
    stmt = select(refusals.c.agent_id, refusals.c.reason).where(refusals.c.task_id == task_id)
    return {r.agent_id: r.reason for r in (await conn.execute(stmt)).all()}
