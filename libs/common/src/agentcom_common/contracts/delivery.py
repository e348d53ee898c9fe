"""What a sidecar says about the change it delivered, or refused to: the diff's stats and
paths, the pre-publication scan's findings, and the change's risk tier.

Carried by `TaskOutcome.delivery`; the scheduler stores it in the task's result under
`delivery`, where the hub (and a person) read it back with `DeliveryReport.model_validate`.
A finding never holds the text it found: only where it is, what kind it is, and a fingerprint
(the SHA-1 of the text, as detect-secrets' baselines hold it) that an allowlist can name.
"""

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from agentcom_common.contracts.base import Contract

RepoPath = Annotated[str, StringConstraints(min_length=1, max_length=1000)]
Tier = Literal[1, 2, 3]
"""1: small, verified, nothing sensitive (may merge without a person where policy allows);
2: a person reviews the pull request; 3: a draft pull request and an alert."""

FindingRule = Literal["secret", "private_address", "personal_reference", "forbidden_file", "scan"]


class FileChange(Contract):
    path: RepoPath
    status: Literal["added", "modified", "deleted"]
    added: int = Field(default=0, ge=0, description="Lines added (0 for a binary file).")
    removed: int = Field(default=0, ge=0, description="Lines removed (0 for a binary file).")
    binary: bool = False


class DiffStats(Contract):
    """The branch against its base (`base...branch`), renames counted as delete and add."""

    files: list[FileChange] = Field(
        default_factory=list[FileChange],
        max_length=500,
        description="The changed files, the first 500 by path; `files_changed` counts them all.",
    )
    files_changed: int = Field(default=0, ge=0)
    lines_added: int = Field(default=0, ge=0)
    lines_removed: int = Field(default=0, ge=0)


class ScanFinding(Contract):
    """Something the pre-publication scan would not let leave the machine (redacted)."""

    rule: FindingRule
    kind: str = Field(
        max_length=200, description="What was found: a detector's name, `private IP address`…"
    )
    path: str = Field(max_length=1000)
    line: int | None = Field(default=None, ge=0)
    fingerprint: str = Field(
        default="",
        max_length=64,
        description="SHA-1 of the found text (empty for a file rule): name it in a repo's "
        "`prepublish_allow.fingerprints` to let exactly that text through.",
    )


Verdict = Literal["approve", "request_changes", "reject"]
Action = Literal["merge", "review", "draft"]
CiState = Literal["green", "red", "pending", "none"]


class DiffReview(Contract):
    """A second model's review of the diff, asked through the gateway (`review.py`).

    `verdict` is None when no usable review came back (the gateway unreachable or refusing,
    a reply that is not the asked-for JSON, or only the writing model answered); `note` says
    which. `model` is the one the gateway's routing says answered, `writer` the one that wrote
    the change (None for a shell task: no model wrote it)."""

    verdict: Verdict | None = None
    comments: list[Annotated[str, StringConstraints(max_length=500)]] = Field(
        default_factory=list[str], max_length=20
    )
    model: str | None = Field(default=None, max_length=200)
    writer: str | None = Field(default=None, max_length=200)
    note: str | None = Field(default=None, max_length=500)


class RiskAssessment(Contract):
    tier: Tier
    reasons: list[Annotated[str, StringConstraints(max_length=300)]] = Field(
        default_factory=list[str], max_length=50
    )


class MergeConflict(Contract):
    """The delivered branch does not merge into its base as the remote has it at delivery
    (the base moved while the task ran): what a person or an agent must resolve."""

    base: str = Field(max_length=500, description="The branch it was checked against.")
    files: list[RepoPath] = Field(
        default_factory=list[str], max_length=200, description="The conflicting files."
    )


class DeliveryReport(Contract):
    diff: DiffStats | None = None
    findings: list[ScanFinding] = Field(default_factory=list[ScanFinding], max_length=200)
    blocked: bool = Field(
        default=False, description="The scan found something: nothing was pushed."
    )
    risk: RiskAssessment | None = None
    review: DiffReview | None = Field(
        default=None, description="The second model's review: part of the tier's evidence."
    )
    pull_request: str | None = Field(default=None, max_length=1000, description="Its URL.")
    ci: CiState | None = Field(
        default=None,
        description="The pull request's checks on GitHub when a merge waited for them: `none` "
        "when the repo runs no CI (`ci: false`), `pending` when they did not finish in time.",
    )
    cap: Action | None = Field(
        default=None,
        description="The most the task's goal allows (its autonomy level): a cap below the "
        "tier's action lowered it.",
    )
    action: Action | None = Field(
        default=None,
        description="What the pull request got: merged (tier 1 where allowed), left for "
        "review, or opened as a draft (tier 3); None without a pull request.",
    )
    merged: bool = False
    merge_note: str | None = Field(
        default=None, max_length=500, description="Why a merge that was due did not happen."
    )
    conflict: MergeConflict | None = Field(
        default=None,
        description="The pushed branch conflicts with its base at the remote: the hub reports "
        "it as a `merge_conflict` health issue. None: it merges (or was not checked).",
    )
