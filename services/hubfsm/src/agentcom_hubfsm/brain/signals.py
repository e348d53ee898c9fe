"""What the brain's rules read, gathered once per pass (I/O only: no decision is made here).

The goal counts and healing's signals are real: the critical issues of the last health
assessment and the reported ones (`health.monitor.current`), and healing's brakes from its
runs (`healing.store.brakes`). So is `contemplation_due`: no contemplation cycle is running, none
ended within `hub_contemplation_interval` (nor did the hub first start within it), and fewer
proposals than a cycle's cap wait for a person (`contemplation.store.due`). So are improving's
(`improving.store`): `improving_budget` is an improving cycle being due (scanning on, none
running, none ended within `hub_improving_interval`), and `improving_left` is 1 while the
current improving stay's cycle has not ended. `budget_exhausted` waits for the hub's budgets at
the llm-registry; until then it is gathered as the value that lets nothing happen.
"""

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from agentcom_common.contracts.hub import GoalState
from agentcom_hubfsm.contemplation import store as contemplation_store
from agentcom_hubfsm.goals import states as goal_states
from agentcom_hubfsm.healing import store as healing_store
from agentcom_hubfsm.health import monitor
from agentcom_hubfsm.improving import store as improving_store
from agentcom_hubfsm.tables import goals

PENDING = frozenset({GoalState.SUBMITTED})
ACTIVE = goal_states.UNFINISHED - PENDING  # planning, awaiting_approval, executing, verifying


@dataclass(frozen=True, slots=True)
class Signals:
    goals_pending: int = 0  # submitted, not planned yet
    goals_active: int = 0  # planning, awaiting approval, executing or verifying
    # the executing budget is spent (the llm-registry answers 429); no RPC reads it yet
    budget_exhausted: bool = False
    # an improving cycle may start: scanning on (`hub_improving_enabled`), none running, none
    # ended within `hub_improving_interval` (no budget is read for it yet: none is kept)
    improving_budget: bool = False
    # critical health issues, and healing's own brakes (cooling down, attempts used up)
    critical_issues: int = 0
    healing_cooldown: bool = False
    healing_exhausted: bool = False
    # improving's work not done yet: 1 while the stay's cycle scans; 0: nothing left, so an
    # improving hub may go on to contemplating (or rest)
    improving_left: int = 0
    # a contemplation cycle may start: none running, none ended within its interval
    contemplation_due: bool = False

    @property
    def goals_open(self) -> int:
        return self.goals_pending + self.goals_active


async def gather(
    conn: AsyncConnection,
    policy: healing_store.Policy = healing_store.DEFAULT,
    contemplation: contemplation_store.Pace | None = None,
    improving: improving_store.Pace | None = None,
) -> Signals:
    """`contemplation`, `improving`: how often their cycles may come; None: never due."""
    rows = await conn.execute(
        select(goals.c.state, func.count())
        .where(goals.c.state.in_(sorted(PENDING | ACTIVE)))
        .group_by(goals.c.state)
    )
    by_state = {GoalState(state): int(n) for state, n in rows}
    health = await monitor.current(conn)
    brakes = await healing_store.brakes(conn, policy)
    return Signals(
        goals_pending=sum(by_state.get(s, 0) for s in PENDING),
        goals_active=sum(by_state.get(s, 0) for s in ACTIVE),
        critical_issues=health.critical,
        healing_cooldown=brakes.cooling,
        healing_exhausted=brakes.exhausted,
        contemplation_due=contemplation is not None
        and await contemplation_store.due(conn, contemplation),
        improving_budget=improving is not None and await improving_store.due(conn, improving),
        improving_left=await improving_store.left(conn, improving) if improving else 0,
    )
