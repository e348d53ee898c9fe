"""The health assessment: gather, judge, keep the result in `hub.health` for the brain's rule
and `GET /api/hub/health` (any replica reads it). Every replica's monitor assesses (the work is
a few reads, and idempotent: the last writer's view is as true as the first's), so the health
shown survives the brain's leader moving."""

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

from nats.aio.client import Client
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agentcom_common.contracts.alert import Severity
from agentcom_common.contracts.health import HealthIssue
from agentcom_hubfsm.health import gather, judge, reports
from agentcom_hubfsm.settings import HubSettings
from agentcom_hubfsm.tables import health

log = logging.getLogger(__name__)
ROW = "hub"


async def assess(engine: AsyncEngine, nc: Client, s: HubSettings) -> list[HealthIssue]:
    """One assessment, stored; returns its issues with the reported ones (what heals)."""
    seen = await gather.gather(nc, s.hub_health_timeout.total_seconds())
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                select(health.c.samples, func.now().label("now"))
                .where(health.c.id == ROW)
                .with_for_update()
            )
        ).one()
        issues, samples = judge.judge(seen, s, row.now, list(row.samples))
        await conn.execute(
            update(health)
            .where(health.c.id == ROW)
            .values(
                assessed_at=row.now,
                issues=[i.model_dump(mode="json") for i in issues],
                samples=samples,
            )
        )
        return issues + await reports.active(conn)


@dataclass(frozen=True, slots=True)
class Current:
    assessed_at: datetime | None
    issues: list[HealthIssue]

    @property
    def critical(self) -> int:
        return sum(i.severity is Severity.CRITICAL for i in self.issues)


async def current(conn: AsyncConnection) -> Current:
    """The last assessment's issues and the reported ones still counting."""
    row = (await conn.execute(select(health).where(health.c.id == ROW))).one()
    stored = [HealthIssue.model_validate(i) for i in row.issues]
    return Current(row.assessed_at, stored + await reports.active(conn))


async def forever(engine: AsyncEngine, nc: Client, s: HubSettings, wake: asyncio.Event) -> None:
    """Assess every `hub_health_interval`, the first one interval after start (the other
    services of a stack starting together need a moment to answer, as the first
    implementation's alerter waited); a new critical issue wakes the brain at once."""
    critical: set[str] = set()
    while True:
        await asyncio.sleep(s.hub_health_interval.total_seconds())
        try:
            issues = await assess(engine, nc, s)
        except Exception:  # Postgres away: the next pass tries again
            log.exception("health.assess_failed")
        else:
            now = {i.key for i in issues if i.severity is Severity.CRITICAL}
            if now - critical:
                log.warning("health.critical", extra={"issues": sorted(now - critical)})
                wake.set()
            critical = now
