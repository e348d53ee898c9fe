"""Proposals: features the hub's contemplation suggests (`contemplating` state), which wait for a
person. Accepting one makes a goal; rejecting one records why, and the next contemplation cycle
is told the reason. Nothing here is ever accepted by the hub itself.
"""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import Field, StringConstraints

from agentcom_common.contracts.base import Contract, Request
from agentcom_common.contracts.task import Lane

MAX_PER_CYCLE: Final = 3  # the cap; `hub_contemplation_max_proposals` may lower it

ProposalId = Annotated[str, StringConstraints(pattern=r"^prop-[0-9a-f]{16}$")]
Line = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Prose = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
Level = Literal["low", "medium", "high"]


class ProposalState(StrEnum):
    PENDING = "pending"  # waits for a person
    ACCEPTED = "accepted"  # a goal was made of it (`goal_id`)
    REJECTED = "rejected"  # `reason` says why; the next cycle is told


class ProposalDraft(Contract):
    """One proposal as the model writes it (JSON or the `<proposal>` XML document)."""

    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    problem: Prose
    solution: Prose
    rationale: Prose
    why_now: Prose
    why_not: Prose = Field(description="The case against doing it (cost, risk, what it delays).")
    impact: Level
    effort: Level
    dependencies: list[Line] = Field(default_factory=list[str], max_length=20)
    related_files: list[Line] = Field(default_factory=list[str], max_length=50)
    success_criteria: list[Line] = Field(
        min_length=1, max_length=10, description="The criteria of the goal it becomes."
    )


class ProposalView(ProposalDraft):
    """A stored proposal, as `GET /api/hub/proposals` shows it."""

    id: str
    state: ProposalState
    repo: str = Field(description="The repo the proposal is about; its goal's repo.")
    cycle: int = Field(description="The contemplation cycle that made it.")
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    reason: str = Field(description="Why it was rejected (told to the next cycle), or ''.")
    goal_id: str | None = Field(description="The goal accepting it made.")


class ProposalPage(Contract):
    proposals: list[ProposalView]
    next_cursor: str | None


class ListProposals(Request):
    state: ProposalState | None = None
    cursor: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,18}$")] | None = None
    limit: int = Field(default=50, ge=1, le=500)


class AcceptProposal(Request):
    """Body of `POST /api/hub/proposals/{id}/accept` (may be empty)."""

    priority: Lane = Field(default=Lane.LOW, description="The goal's lane.")
    reason: Annotated[str, StringConstraints(max_length=500)] = ""


class RejectProposal(Request):
    """Body of `POST /api/hub/proposals/{id}/reject`: the reason is told to the next cycle."""

    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
