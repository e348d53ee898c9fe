"""HTTP API of proposals: /api/hub/proposals, /accept, /reject. Parse, call ops, answer."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from agentcom_common import service
from agentcom_common.contracts.proposal import (
    AcceptProposal,
    ListProposals,
    ProposalPage,
    ProposalState,
    ProposalView,
    RejectProposal,
)
from agentcom_common.openapi import errors
from agentcom_common.web import Admin, Viewer
from agentcom_hubfsm.contemplation import ops
from agentcom_hubfsm.own import Own

PROPOSAL_ID = r"^prop-[0-9a-f]{16}$"
CURSOR = r"^[0-9]{1,18}$"


def proposals_of(request: Request) -> ops.Proposals:
    return service.own(request, Own).proposals


P = Annotated[ops.Proposals, Depends(proposals_of)]
Id = Annotated[str, Path(pattern=PROPOSAL_ID)]
proposals = APIRouter(prefix="/api/hub/proposals", tags=["hub"])


@proposals.get("")
async def list_proposals(
    p: P,
    _who: Viewer,
    state: ProposalState | None = None,
    cursor: Annotated[str | None, Query(pattern=CURSOR)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> ProposalPage:
    """Contemplation's proposals newest first (`state=pending`: those waiting for a person);
    pass `next_cursor` back as `cursor` for the next page."""
    return await ops.page(p, ListProposals(state=state, cursor=cursor, limit=limit))


@proposals.post("/{proposal_id}/accept", responses=errors(404, 409))
async def accept_proposal(
    proposal_id: Id, p: P, who: Admin, body: AcceptProposal | None = None
) -> ProposalView:
    """Accept a pending proposal: it becomes a goal (source `proposal`, `goal_id` in the
    answer), planned and run like any other.

    Errors: 404 `proposal_not_found`, 409 `transition_refused` (already decided).
    """
    return await ops.accept(p, proposal_id, body or AcceptProposal(), who.name)


@proposals.post("/{proposal_id}/reject", responses=errors(404, 409))
async def reject_proposal(proposal_id: Id, p: P, who: Admin, body: RejectProposal) -> ProposalView:
    """Reject a pending proposal; the reason is told to the next contemplation cycle.

    Errors: 404 `proposal_not_found`, 409 `transition_refused` (already decided).
    """
    return await ops.reject(p, proposal_id, body, who.name)
