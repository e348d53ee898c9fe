"""One transition writer for a state machine kept in a row: guarded UPDATE + history row +
outbox event, in the caller's transaction.

A machine is data: `Machine` names its table, its history table, its transitions and how its
event is built. `move` puts the states the target may be entered from in the UPDATE's WHERE,
which is the guard that holds when two writers race (the loser gets `TransitionRefusedError`
and nothing is written). The history row and the outbox event commit with the move or not at
all, so a process killed at any line leaves either the old state with no record, or the new
state with its record and its event (the relay publishes it after a restart).

The task machine in the queue predates this module and keeps its own writer (its batch path
writes many moves per statement); new machines (the hub's goals and the hub itself) use this.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from sqlalchemy import Row, Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from agentcom_common import outbox
from agentcom_common.contracts.base import Contract
from agentcom_common.errors import TransitionRefusedError

S = TypeVar("S", bound=StrEnum)


@dataclass(frozen=True, slots=True)
class Moved(Generic[S]):
    """What a move did: the state it left, the row as it is now, and when."""

    previous: S
    row: Row[Any]
    at: datetime


@dataclass(frozen=True, slots=True)
class Machine(Generic[S]):
    """A state machine whose state is the `state` column of `table`, keyed by `id`.

    `history` has `<key>` (the row id), `from_state`, `to_state`, `reason`, `actor` and `at`
    columns; `event(moved, to, reason, actor)` builds the outbox subject and body."""

    name: str
    states: type[S]
    transitions: Mapping[S, frozenset[S]]
    table: Table
    history: Table
    key: str  # the history's column naming the row: "goal_id"
    outbox: Table
    event: Callable[[Moved[S], S, str, str], tuple[str, Contract]]

    def sources(self, target: S) -> frozenset[S]:
        return frozenset(s for s, targets in self.transitions.items() if target in targets)

    def allowed(self, source: S, target: S) -> bool:
        return target in self.transitions[source]


async def move(
    conn: AsyncConnection,
    machine: Machine[S],
    row_id: str,
    to: S,
    *,
    reason: str,
    actor: str,
    values: Mapping[str, Any] | None = None,
    sources: frozenset[S] | None = None,
) -> Moved[S]:
    """Move row `row_id` to `to` if its state may go there (narrowed to `sources` if given),
    setting `values` too; record the history row and the event. Raises
    `TransitionRefusedError` (409 `transition_refused`) when the row is elsewhere or absent."""
    allowed = machine.sources(to) if sources is None else machine.sources(to) & sources
    table = machine.table
    current = select(table.c.state).where(table.c.id == row_id).scalar_subquery()
    stmt = (
        update(table)
        .where(table.c.id == row_id, table.c.state.in_(sorted(allowed)))
        .values(state=to.value, updated_at=func.now(), **dict(values or {}))
        .returning(current.label("previous"), func.now().label("moved_at"), *table.c)
    )
    row = (await conn.execute(stmt)).one_or_none()
    if row is None:
        raise TransitionRefusedError(f"{machine.name} {row_id} cannot move to {to.value} now")
    moved = Moved(machine.states(row.previous), row, row.moved_at)
    await record(conn, machine, row_id, moved.previous, to, reason=reason, actor=actor)
    subject, body = machine.event(moved, to, reason, actor)
    await outbox.add(conn, machine.outbox, subject, body)
    return moved


async def record(
    conn: AsyncConnection,
    machine: Machine[S],
    row_id: str,
    previous: S | None,
    to: S,
    *,
    reason: str,
    actor: str,
) -> None:
    """The history row of a move; `previous=None` records a row's creation."""
    await conn.execute(
        insert(machine.history).values(
            {
                machine.key: row_id,
                "from_state": None if previous is None else previous.value,
                "to_state": to.value,
                "reason": reason,
                "actor": actor,
            }
        )
    )
