"""Issues reported from outside the assessment: replaced by key, counted until they expire or
are cleared."""

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common.contracts.alert import Severity
from agentcom_common.contracts.health import IssueCategory
from agentcom_hubfsm.health import reports

KEY = "ci_failing:example.invalid/r"


async def report(engine: AsyncEngine, summary: str, ttl: timedelta = reports.DEFAULT_TTL) -> None:
    async with engine.begin() as conn:
        await reports.report_issue(
            conn,
            key=KEY,
            source="github",
            severity=Severity.CRITICAL,
            category=IssueCategory.CI_FAILING,
            summary=summary,
            evidence={"branch": "main"},
            ttl=ttl,
        )


async def active(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return [i.summary for i in await reports.active(conn)]


async def test_a_report_with_the_same_key_replaces_the_first(engine: AsyncEngine) -> None:
    await report(engine, "build failed")
    await report(engine, "build failed again")
    assert await active(engine) == ["build failed again"]


async def test_a_cleared_or_expired_report_no_longer_counts(engine: AsyncEngine) -> None:
    await report(engine, "build failed")
    async with engine.begin() as conn:
        assert await reports.clear_issue(conn, KEY)
        assert not await reports.clear_issue(conn, KEY)
    assert await active(engine) == []
    await report(engine, "lapsed", ttl=timedelta(0))
    assert await active(engine) == []
