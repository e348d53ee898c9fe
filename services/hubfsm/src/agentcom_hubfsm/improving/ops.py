"""What a person may read of improvement scanning: the findings, newest first, each with why it
was kept (a goal) or dropped, and the cycles' reports."""

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common.contracts.scan import (
    CyclePage,
    CycleView,
    FindingPage,
    FindingView,
    ListCycles,
    ListFindings,
)
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


async def cycles(f: Findings, q: ListCycles) -> CyclePage:
    async with f.engine.connect() as conn:
        found, cursor = await store.cycles(conn, cursor=q.cursor, limit=q.limit)
    return CyclePage(cycles=found, next_cursor=cursor)


async def cycle(f: Findings, cycle_id: int) -> CycleView:
    async with f.engine.connect() as conn:
        found = await store.cycle(conn, cycle_id)
    if found is None:
        raise NotFoundError(f"improving cycle {cycle_id} does not exist", code="cycle_not_found")
    return found
