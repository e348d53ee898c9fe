"""Every SQL statement on the rate-limit tables (`rate_buckets`, `rate_overrides`, `cutoffs`).

Time is Postgres's (`clock_timestamp()`), never a replica's: replicas on different hosts fill
and judge the same rows, so they must read one clock.
"""

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from agentcom_scheduler.tables import rate_overrides

# A report batch's gate in one statement: the cut-offs under way among the batch's speakers
# (`cut`), and up to n tokens taken from each (agent, tier) bucket (`took`; a cut-off agent's
# reports are refused whatever its bucket holds). A new bucket starts full at the agent's rate (its override, else the setting); an
# old one is refilled for the time since its stamp, capped at the rate. `granted` is how many
# it gave this time. Rows are locked in (agent, tier) order, so two replicas taking for the
# same agents take turns, never deadlock. In DO UPDATE `excluded.granted` is
# min(n, floor(rate)), which caps the grant as n would: the refilled tokens never exceed the
# rate. A cut-off row has a NULL tier; a bucket row a NULL left_s.
_AVAIL = (
    "least(excluded.per_minute, b.tokens + greatest(0, extract(epoch FROM excluded.stamp"
    " - b.stamp)) * excluded.per_minute / 60.0)"
)
_ADMIT = text(f"""
WITH cut AS (
    SELECT agent_id, extract(epoch FROM blocked_until - clock_timestamp()) AS left_s
    FROM scheduler.cutoffs
    WHERE agent_id = ANY(CAST(:speakers AS text[])) AND blocked_until > clock_timestamp()
), took AS (
    INSERT INTO scheduler.rate_buckets AS b (agent_id, tier, per_minute, tokens, granted, stamp)
    SELECT w.agent_id, w.tier, r.per_minute,
           r.per_minute - least(w.n, floor(r.per_minute)), least(w.n, floor(r.per_minute)),
           clock_timestamp()
    FROM unnest(CAST(:agents AS text[]), CAST(:tiers AS text[]), CAST(:counts AS int[]))
         AS w(agent_id, tier, n)
    LEFT JOIN scheduler.rate_overrides o ON o.agent_id = w.agent_id
    CROSS JOIN LATERAL (SELECT CAST(CASE w.tier
        WHEN 'light' THEN coalesce(o.light, :light)
        WHEN 'normal' THEN coalesce(o.normal, :normal)
        ELSE coalesce(o.heavy, :heavy) END AS float8) AS per_minute) r
    ORDER BY w.agent_id, w.tier
    ON CONFLICT (agent_id, tier) DO UPDATE SET
        granted = least(excluded.granted, floor({_AVAIL})),
        tokens = {_AVAIL} - least(excluded.granted, floor({_AVAIL})),
        per_minute = excluded.per_minute,
        stamp = excluded.stamp
    RETURNING b.agent_id, b.tier, b.granted, b.tokens, b.per_minute
)
SELECT agent_id, NULL AS tier, NULL AS granted, NULL AS tokens, NULL AS per_minute,
       CAST(left_s AS float8) AS left_s
FROM cut
UNION ALL
SELECT agent_id, tier, granted, tokens, per_minute, NULL FROM took
""")


async def admit(
    conn: AsyncConnection,
    speakers: Sequence[str],
    wanted: Mapping[tuple[str, str], int],
    rates: Mapping[str, int],
) -> tuple[dict[str, float], list[Any]]:
    """Seconds left of each cut-off under way among `speakers` (absent: may talk), and the
    takes of `wanted[(agent, tier)]` tokens (as many as there are): rows of (agent_id, tier,
    granted, tokens left, per_minute)."""
    keys = sorted(wanted)
    params: dict[str, Any] = {
        "speakers": list(speakers),
        "agents": [a for a, _ in keys],
        "tiers": [t for _, t in keys],
        "counts": [wanted[k] for k in keys],
        **rates,
    }
    cut: dict[str, float] = {}
    took: list[Any] = []
    for row in await conn.execute(_ADMIT, params):
        if row.tier is None:
            cut[row.agent_id] = float(row.left_s)
        else:
            took.append(row)
    return cut, took


async def fetch_override(conn: AsyncConnection, agent_id: str) -> Any:
    stmt = select(rate_overrides).where(rate_overrides.c.agent_id == agent_id)
    return (await conn.execute(stmt)).one_or_none()


async def set_override(conn: AsyncConnection, agent_id: str, rates: Mapping[str, int]) -> None:
    """Store the agent's override (empty: none) and empty its buckets, so the new rate applies
    from a full bucket on every replica."""
    await conn.execute(delete(rate_overrides).where(rate_overrides.c.agent_id == agent_id))
    if rates:
        await conn.execute(pg_insert(rate_overrides).values(agent_id=agent_id, **rates))
    await conn.execute(
        text("DELETE FROM scheduler.rate_buckets WHERE agent_id = :agent"), {"agent": agent_id}
    )


# Count one malformed report: those older than the window drop out, this one is appended.
# The row stays locked until the transaction ends, so a cut-off decided next is this count's.
_VIOLATION = text("""
INSERT INTO scheduler.cutoffs AS c (agent_id, violations, cut_offs)
VALUES (:agent, ARRAY[clock_timestamp()], 0)
ON CONFLICT (agent_id) DO UPDATE SET violations = array_append(
    ARRAY(SELECT v FROM unnest(c.violations) AS v WHERE v > clock_timestamp() - CAST(:window AS interval)),
    clock_timestamp())
RETURNING cardinality(c.violations) AS seen, c.cut_offs
""")

_CUT_OFF = text("""
UPDATE scheduler.cutoffs SET violations = '{}', cut_offs = cut_offs + 1,
    blocked_until = clock_timestamp() + CAST(:cooldown AS interval)
WHERE agent_id = :agent
""")


async def violation(
    conn: AsyncConnection, agent_id: str, window: timedelta, limit: int, cooldowns: list[timedelta]
) -> float:
    """Count a violation (in the caller's transaction); the cut-off's seconds when this one
    reaches `limit` (the count starts again), else 0."""
    row = (await conn.execute(_VIOLATION, {"agent": agent_id, "window": window})).one()
    if row.seen < limit:
        return 0.0
    cooldown = cooldowns[min(int(row.cut_offs), len(cooldowns) - 1)]
    await conn.execute(_CUT_OFF, {"agent": agent_id, "cooldown": cooldown})
    return cooldown.total_seconds()
