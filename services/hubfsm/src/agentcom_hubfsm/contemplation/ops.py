"""What a person may do with proposals: list them, accept one (it becomes a goal, in the same
transaction), reject one (the reason is told to the next contemplation cycle). A proposal is
decided once: a second accept or reject is a 409 naming its state. The hub never decides one
itself."""

import asyncio
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common.contracts.hub import SubmitGoal
from agentcom_common.contracts.proposal import (
    AcceptProposal,
    ListProposals,
    ProposalPage,
    ProposalState,
    ProposalView,
    RejectProposal,
)
from agentcom_common.errors import ConflictError, NotFoundError
from agentcom_hubfsm.contemplation import store
from agentcom_hubfsm.goals import store as goal_store


@dataclass(frozen=True, slots=True)
class Proposals:
    engine: AsyncEngine
    wake: asyncio.Event  # the goal driver's: an accepted proposal is a goal to plan
    brain_wake: asyncio.Event  # the brain's: a new goal is open


async def page(p: Proposals, q: ListProposals) -> ProposalPage:
    async with p.engine.connect() as conn:
        found, cursor = await store.page(conn, state=q.state, cursor=q.cursor, limit=q.limit)
    return ProposalPage(proposals=found, next_cursor=cursor)


def _refused(proposal_id: str, state: str) -> ConflictError:
    return ConflictError(
        f"proposal {proposal_id} is {state}; only a pending proposal can be decided",
        code="transition_refused",
    )


async def accept(p: Proposals, proposal_id: str, body: AcceptProposal, actor: str) -> ProposalView:
    """Make a goal of the proposal (source `proposal`, its success criteria, low priority unless
    told otherwise) and mark it accepted with the goal's id."""
    async with p.engine.begin() as conn:
        row = await store.get(conn, proposal_id, lock=True)
        if row is None:
            raise NotFoundError(f"proposal {proposal_id} does not exist", code="proposal_not_found")
        if row.state != ProposalState.PENDING:
            raise _refused(proposal_id, row.state)
        proposal = store.view(row)
        description = "\n\n".join(
            (
                f"Problem: {proposal.problem}",
                f"Solution: {proposal.solution}",
                f"Rationale: {proposal.rationale}",
                f"Related files: {', '.join(proposal.related_files) or '(none)'}",
                f"Dependencies: {', '.join(proposal.dependencies) or '(none)'}",
            )
        )
        goal, _ = await goal_store.create(
            conn,
            SubmitGoal(
                title=proposal.title,
                description=description[:20_000],
                success_criteria=list(proposal.success_criteria),
                repo=proposal.repo,
                priority=body.priority,
                client_key=f"proposal:{proposal_id}",
                source="proposal",
            ),
            actor,
        )
        moved = await store.decide(
            conn,
            proposal_id,
            ProposalState.ACCEPTED,
            actor=actor,
            reason=body.reason,
            goal_id=goal.id,
        )
        if moved is None:  # unreachable under the row lock; the guard is the real rule
            raise _refused(proposal_id, "decided")
    p.wake.set()
    p.brain_wake.set()
    return store.view(moved)


async def reject(p: Proposals, proposal_id: str, body: RejectProposal, actor: str) -> ProposalView:
    async with p.engine.begin() as conn:
        row = await store.get(conn, proposal_id, lock=True)
        if row is None:
            raise NotFoundError(f"proposal {proposal_id} does not exist", code="proposal_not_found")
        moved = await store.decide(
            conn, proposal_id, ProposalState.REJECTED, actor=actor, reason=body.reason
        )
        if moved is None:
            raise _refused(proposal_id, row.state)
    return store.view(moved)
