"""Issues reported to the hub from outside its own assessment: a repo's default branch failing
CI (a GitHub event), a merge conflict on a goal's branch (a delivery's result).

A report counts as a health issue (`GET /api/hub/health`; a critical one starts healing) from
when it is made until it expires or is cleared. Reporting again with the same `key` replaces
the report and restarts its time, so a source that keeps seeing the problem keeps it alive and
one that sees it fixed clears it (or lets it lapse).

    from agentcom_hubfsm.health import reports
    async with engine.begin() as conn:
        await reports.report_issue(
            conn,
            key="ci_failing:github.com/o/r",
            source="github",
            severity=Severity.CRITICAL,
            category=IssueCategory.CI_FAILING,
            summary="main of o/r fails CI (workflow build)",
            evidence={"repo": "...", "branch": "main", "log_tail": "..."},
        )
"""

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from agentcom_common.contracts.alert import Severity
from agentcom_common.contracts.health import HealthIssue, IssueCategory
from agentcom_hubfsm.tables import health_reports

DEFAULT_TTL = timedelta(hours=24)  # a problem nobody re-reports or clears lapses within a day


async def report_issue(
    conn: AsyncConnection,
    *,
    key: str,
    source: str,
    severity: Severity,
    category: IssueCategory,
    summary: str,
    evidence: dict[str, Any],
    ttl: timedelta = DEFAULT_TTL,
) -> None:
    """Record (or replace, by `key`) an issue seen outside the assessment, in the caller's
    transaction. `evidence` is what a remedy acts on: for `ci_failing` the repo, branch, job
    and its log tail; for `merge_conflict` the repo, branch and conflicting files."""
    values = {
        "key": key,
        "source": source,
        "severity": severity.value,
        "category": category.value,
        "summary": summary[:2000],
        "evidence": evidence,
        "reported_at": func.now(),
        "expires_at": func.now() + ttl,
    }
    stmt = insert(health_reports).values(values)
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[health_reports.c.key],
            set_={k: stmt.excluded[k] for k in values if k != "key"},
        )
    )


async def clear_issue(conn: AsyncConnection, key: str) -> bool:
    """Forget a reported issue (its source saw it fixed); False if there was none."""
    gone = await conn.execute(delete(health_reports).where(health_reports.c.key == key))
    return gone.rowcount > 0


async def active(conn: AsyncConnection) -> list[HealthIssue]:
    """The reported issues that have not expired, oldest first."""
    rows = await conn.execute(
        select(health_reports)
        .where(health_reports.c.expires_at > func.now())
        .order_by(health_reports.c.reported_at)
    )
    return [
        HealthIssue(
            key=r.key,
            source=r.source,
            severity=Severity(r.severity),
            category=IssueCategory(r.category),
            summary=r.summary,
            evidence=r.evidence,
            seen_at=r.reported_at,
        )
        for r in rows
    ]
