"""GitHub contracts: what the hub recorded of GitHub's webhook deliveries, the feedback rounds
of the pull requests our tasks opened, and the events the hub publishes about them."""

from datetime import datetime
from typing import Literal

from pydantic import Field

from agentcom_common.contracts.base import Contract

DeliveryOutcome = Literal["acted", "ignored", "refused", "failed"]
RoundKind = Literal["check_failed", "changes_requested", "merge_conflict"]


class DeliveryView(Contract):
    """One webhook delivery as `GET /api/webhooks/deliveries` lists it."""

    id: int
    delivery: str | None = Field(description="`X-GitHub-Delivery`, when the request had one.")
    event: str | None = Field(description="`X-GitHub-Event`: push, pull_request, ...")
    action: str | None
    repo: str | None = Field(description="The repository's full name, owner/name.")
    status: int = Field(description="The HTTP status the hub answered.")
    outcome: DeliveryOutcome
    reason: str = Field(description="Why it was acted on, ignored or refused.")
    done: list[str] = Field(description="What the hub did because of it, in order.")
    received_at: datetime


class DeliveryPage(Contract):
    deliveries: list[DeliveryView]
    next_cursor: str | None


class WebhookAnswer(Contract):
    """The hub's answer to GitHub (GitHub shows it under the hook's recent deliveries)."""

    outcome: DeliveryOutcome
    reason: str
    done: list[str]


class PrRound(Contract):
    """One feedback round of a pull request: what GitHub said and what the hub did about it."""

    repo: str
    number: int
    round: int = Field(description="1, 2, ... per pull request; never reset by a push.")
    kind: RoundKind
    summary: str
    context: str = Field(
        description="The failing job's log tail, the review comments with "
        "their file and line, or the conflicting files."
    )
    task_id: str | None = Field(description="The follow-up task; None once escalated.")
    escalated: bool
    at: datetime


class CiFailed(Contract):
    """Body of `agentcom.evt.github.ci_failed`: a check failed on a repo's default branch, the
    healing signal of GitHub's events."""

    repo: str
    branch: str
    sha: str
    check: str
    url: str
    log_tail: str
    at: datetime


class PrEscalated(Contract):
    """Body of `agentcom.evt.github.pr_escalated`: a pull request used up its feedback rounds
    and a person must look; its goal went to `needs_review` (if it was not finished)."""

    severity: Literal["critical"] = "critical"
    repo: str
    number: int
    url: str
    goal_id: str
    rounds: int
    kind: RoundKind
    summary: str
    at: datetime
