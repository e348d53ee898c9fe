"""HTTP API of improvement scanning: /api/hub/findings and /api/hub/improving/cycles. Parse,
call ops, answer."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from agentcom_common import service
from agentcom_common.contracts.scan import (
    CyclePage,
    CycleView,
    FindingPage,
    FindingView,
    ListCycles,
    ListFindings,
)
from agentcom_common.openapi import errors
from agentcom_common.web import Viewer
from agentcom_hubfsm.improving import ops
from agentcom_hubfsm.own import Own

FINDING_ID = r"^find-[0-9a-f]{16}$"
CURSOR = r"^[0-9]{1,18}$"


def findings_of(request: Request) -> ops.Findings:
    return service.own(request, Own).findings


F = Annotated[ops.Findings, Depends(findings_of)]
findings = APIRouter(prefix="/api/hub/findings", tags=["hub"])


@findings.get("")
async def list_findings(
    f: F,
    _who: Viewer,
    repo: Annotated[str | None, Query(min_length=1, max_length=500)] = None,
    kept: bool | None = None,
    cursor: Annotated[str | None, Query(pattern=CURSOR)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> FindingPage:
    """Improvement scans' findings newest first, each `kept` (it became the goal `goal_id`) or
    `dropped`, with the reason (oscillation, a cooldown, the cycle's cap, a duplicate);
    `repo=`, `kept=true|false` filter; pass `next_cursor` back as `cursor` for the next page."""
    return await ops.page(f, ListFindings(repo=repo, kept=kept, cursor=cursor, limit=limit))


@findings.get("/{finding_id}", responses=errors(404))
async def get_finding(
    finding_id: Annotated[str, Path(pattern=FINDING_ID)], f: F, _who: Viewer
) -> FindingView:
    """One finding (a self-improvement goal's `link`).

    Errors: 404 `finding_not_found`.
    """
    return await ops.get(f, finding_id)


cycles = APIRouter(prefix="/api/hub/improving/cycles", tags=["hub"])


@cycles.get("")
async def list_cycles(
    f: F,
    _who: Viewer,
    cursor: Annotated[str | None, Query(pattern=CURSOR)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> CyclePage:
    """Improving cycles newest first, each with its report: the repos scanned (each scan's end),
    findings kept and dropped by reason, the goals made, the model budget used; a running
    cycle has `outcome` null and its repos `scanning`. Pass `next_cursor` back as `cursor`."""
    return await ops.cycles(f, ListCycles(cursor=cursor, limit=limit))


@cycles.get("/{cycle_id}", responses=errors(404))
async def get_cycle(
    cycle_id: Annotated[int, Path(ge=1, le=999_999_999_999_999_999)], f: F, _who: Viewer
) -> CycleView:
    """One improving cycle (a finding's `cycle`).

    Errors: 404 `cycle_not_found`.
    """
    return await ops.cycle(f, cycle_id)
