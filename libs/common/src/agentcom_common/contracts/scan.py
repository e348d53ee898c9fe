"""Improvement scans: what an agent's `scan` executor finds in a repo's workspace, and how the hub
shows what it did with each finding (`GET /api/hub/findings`).

A finding's fingerprint is the hash of its category, its files (normalised: posix, no `./`,
sorted, deduplicated) and its subject (normalised: lowercase, runs of `-_.` and spaces as one
`-`), never of line numbers or evidence: the same problem found again after unrelated edits
has the same fingerprint, which is what the hub's cooldowns count.
"""

import hashlib
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import Field, StringConstraints

from agentcom_common.contracts.base import Contract, Request

Severity = Literal["low", "medium", "high"]
RANK: Final[dict[str, int]] = {"high": 3, "medium": 2, "low": 1}
FindingId = Annotated[str, StringConstraints(pattern=r"^find-[0-9a-f]{16}$")]
Line = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
_RUNS = re.compile(r"[\s._-]+")


def normal_file(path: str) -> str:
    parts = [p for p in path.strip().replace("\\", "/").split("/") if p not in ("", ".")]
    return "/".join(parts)


def normal_subject(subject: str) -> str:
    return _RUNS.sub("-", subject.strip().lower()).strip("-")


def fingerprint(category: str, files: list[str], subject: str) -> str:
    named = sorted({normal_file(f) for f in files})
    text = "\n".join((category.strip().lower(), "\0".join(named), normal_subject(subject)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ScanFinding(Contract):
    """One thing worth doing, as a scanner reports it. `title` starts with what to do (its verb:
    add, remove, declare, fix...), which the hub's anti-oscillation reads."""

    category: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    severity: Severity
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    subject: Line = Field(description="What it is about (a module, a dependency, a rule code).")
    files: list[Line] = Field(min_length=1, max_length=50)
    evidence: list[Line] = Field(default_factory=list[str], max_length=50)
    fingerprint: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]

    def expected_fingerprint(self) -> str:
        return fingerprint(self.category, self.files, self.subject)


class ScanResult(Contract):
    """A scan task's result (`result.details.scan`): the languages scanned, the findings, and
    the scanners that could not run (name -> why)."""

    languages: list[str] = Field(default_factory=list[str], max_length=20)
    findings: list[ScanFinding] = Field(default_factory=list[ScanFinding], max_length=1000)
    skipped: dict[str, str] = Field(default_factory=dict[str, str], max_length=50)


class FindingState(StrEnum):
    KEPT = "kept"  # became a goal (`goal_id`)
    DROPPED = "dropped"  # `reason` says why


class FindingView(ScanFinding):
    id: str
    repo: str
    cycle: int = Field(description="The improving cycle that found it.")
    state: FindingState
    reason: str = Field(description="Why it was kept or dropped.")
    goal_id: str | None
    created_at: datetime


class ListFindings(Request):
    repo: str | None = None
    kept: bool | None = None
    cursor: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,18}$")] | None = None
    limit: int = Field(default=50, ge=1, le=500)


class FindingPage(Contract):
    findings: list[FindingView]
    next_cursor: str | None = None


class RepoScan(Contract):
    """One repo of an improving cycle: its scan task and how it ended."""

    repo: str
    task_id: str | None = None
    state: str = Field(
        description="The scan task's end (`completed`, `failed`, `cancelled`, ...), "
        "`timed_out` (it did not end within the scan timeout and was cancelled) or `scanning` "
        "(the cycle is still running)."
    )
    findings: int = Field(default=0, description="How many findings its scan reported.")
    note: str | None = Field(default=None, description="Why it gave no findings, if it did not.")


class RepoReview(Contract):
    """One repo's model review of its recent diff in an improving cycle."""

    repo: str
    head: str | None = Field(default=None, description="The commit reviewed.")
    state: str = Field(
        description="`reviewed`, `refused` (the `improving` budget is spent: no repo after it "
        "is reviewed this cycle), `failed` (the repo or the model could not be read), or "
        "`nothing` (no commit yet)."
    )
    findings: int = Field(
        default=0, description="Findings read from the reply and kept for the filters."
    )
    note: str | None = None


class CycleBudget(Contract):
    """What a cycle spent on models through the gateway (charged to the `improving` budget)."""

    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0


class CycleSummary(Contract):
    """What a cycle did, stored when it ends."""

    repos: list[RepoScan] = Field(default_factory=list[RepoScan])
    reviews: list[RepoReview] = Field(
        default_factory=list[RepoReview], description="The model reviews (`hub_improving_review`)."
    )
    found: int = Field(default=0, description="Findings filtered (every repo's, duplicates too).")
    kept: int = 0
    dropped: dict[str, int] = Field(
        default_factory=dict[str, int],
        description="Dropped findings by reason: `duplicate`, `oscillation`, "
        "`fingerprint_cooldown`, `file_cooldown`, `cap`.",
    )
    goals: list[str] = Field(default_factory=list[str], description="The goals it made.")
    budget: CycleBudget = Field(default_factory=CycleBudget)
    notes: list[str] = Field(
        default_factory=list[str], description="What went wrong (a scan that failed, no repo)."
    )


class CycleView(CycleSummary):
    """An improving cycle (`GET /api/hub/improving/cycles/{id}`)."""

    id: int
    outcome: str | None = Field(
        description="`kept` (goals made), `nothing`, `failed`, `interrupted`; null while running."
    )
    report: str = Field(description="The cycle's report in one line.")
    started_at: datetime
    ended_at: datetime | None


class ListCycles(Request):
    cursor: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,18}$")] | None = None
    limit: int = Field(default=50, ge=1, le=500)


class CyclePage(Contract):
    cycles: list[CycleView]
    next_cursor: str | None = None
