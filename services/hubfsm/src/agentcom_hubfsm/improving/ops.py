"""What a person may read of improvement scanning: the findings, newest first, each with why it
was kept (a goal) or dropped."""

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common.contracts.scan import FindingPage, FindingView, ListFindings
from agentcom_common.errors import NotFoundError
from agentcom_hubfsm.improving import store


@dataclass(frozen=True, slots=True)
class Findings:
    engine: AsyncEngine


async def page(f: Findings, q: ListFindings) -> FindingPage:
    async with f.engine.connect() as conn:
        found, cursor = await store.page(
            conn, repo=q.repo, kept=q.kept, cursor=q.cursor, limit=q.limit
        )
    return FindingPage(findings=found, next_cursor=cursor)


async def get(f: Findings, finding_id: str) -> FindingView:
    async with f.engine.connect() as conn:
        found = await store.get(conn, finding_id)
    if found is None:
        raise NotFoundError(f"finding {finding_id} does not exist", code="finding_not_found")
    return found
