"""Every SQL statement on `dashboard.alerts`: the alert book's state, kept with its events."""

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agentcom_common.contracts.alert import AlertCleared, AlertFired
from agentcom_dashboard.alerts import Alert, AlertBook, Change
from agentcom_dashboard.tables import alerts


async def load(engine: AsyncEngine) -> AlertBook:
    """The book as the last run left it: active alerts, and when each rule last fired."""
    book = AlertBook()
    async with engine.connect() as conn:
        rows = (await conn.execute(select(alerts))).all()
    for row in rows:
        fired = AlertFired(
            rule_id=row.rule_id,
            severity=row.severity,
            message=row.message,
            details=row.details,
            fired_at=row.fired_at,
        )
        book.last_fired[row.rule_id] = row.fired_at
        if row.active:
            book.active[row.rule_id] = Alert(fired, row.acknowledged_by)
    return book


async def record(conn: AsyncConnection, change: Change) -> None:
    """Apply one change to its rule's row (the caller's transaction also holds the event)."""
    if isinstance(change, AlertFired):
        values = {
            "active": True,
            "severity": change.severity.value,
            "message": change.message,
            "details": change.details,
            "fired_at": change.fired_at,
            "acknowledged_by": None,
        }
        stmt = insert(alerts).values(rule_id=change.rule_id, **values)
        await conn.execute(
            stmt.on_conflict_do_update(index_elements=[alerts.c.rule_id], set_=values)
        )
    elif isinstance(change, AlertCleared):
        await conn.execute(
            update(alerts)
            .where(alerts.c.rule_id == change.rule_id)
            .values(active=False, acknowledged_by=None)
        )
    else:
        await conn.execute(
            update(alerts)
            .where(alerts.c.rule_id == change.rule_id)
            .values(acknowledged_by=change.by)
        )
