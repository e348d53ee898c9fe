"""A delivered change's risk tier, from its diff alone: a pure function and its rules.

The tier is the highest any rule gives, and every rule that raised it says why:
- size: more than `tier1_max_lines` changed lines or `tier1_max_files` files is tier 2, more
  than `tier3_min_lines` / `tier3_min_files` is tier 3;
- sensitive paths (`path_rules`: CI config, dependency files, migrations, auth, deploy), each
  rule with its own tier;
- tests: a deleted test file is `tests_removed_tier`; source changed with no test touched is
  `untested_code_tier`;
- verification evidence: none (`not_verified`) is `unverified_tier`, failing checks are 3;
- binary files are `binary_tier`;
- the second model's review (`DiffReview`): none usable is `unreviewed_tier`, `request_changes`
  is `review_changes_tier`, `reject` is `review_reject_tier`; its comments join the reasons.
Patterns are `fnmatch` against the repo-relative path (`*` crosses `/`, and `*/auth/*` also
matches a top-level `auth/`); a pattern without a `/` is matched against the file's name alone. Nothing here reads a clock, a file or a model, so
the hub can recompute a tier from a stored `DiffStats` with other rules.
"""

import fnmatch
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agentcom_common.contracts.delivery import (
    Action,
    DiffReview,
    DiffStats,
    FileChange,
    RiskAssessment,
    Tier,
)

Verification = Literal["pass", "fail", "not_verified"]
# what a pull request may get, least first: a cap only ever moves an action down this list
_ORDER: tuple[Action, ...] = ("draft", "review", "merge")
# a goal's autonomy level (`contracts.hub.Autonomy`) as the most its changes may get: a goal
# whose plan waits for a person gets a person's review of its changes too
AUTONOMY_CAPS: dict[str, Action] = {"auto": "merge", "review_plan": "review"}


class PathRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    patterns: list[str] = Field(min_length=1)
    tier: Tier


DEFAULT_PATH_RULES: tuple[PathRule, ...] = (
    PathRule(
        name="CI config",
        patterns=[".github/*", ".gitlab-ci.yml", ".ci/*", ".circleci/*", "Jenkinsfile"],
        tier=3,
    ),
    PathRule(
        name="deploy",
        patterns=["deploy/*", "Dockerfile*", "compose*.y*ml", "docker-compose*", "*.tf", "k8s/*"],
        tier=3,
    ),
    PathRule(
        name="auth",
        patterns=["*/auth/*", "auth.py", "auth_*.py", "*_auth.py", "security.py", "*permissions*"],
        tier=3,
    ),
    PathRule(name="migrations", patterns=["*migrations/*", "*alembic/*", "*.sql"], tier=2),
    PathRule(
        name="dependencies",
        patterns=[
            "pyproject.toml",
            "uv.lock",
            "requirements*.txt",
            "setup.py",
            "setup.cfg",
            "poetry.lock",
            "package.json",
            "package-lock.json",
            "Cargo.toml",
            "Cargo.lock",
            "go.mod",
            "go.sum",
        ],
        tier=2,
    ),
)


class RiskRules(BaseModel):
    """Thresholds and path rules; every field has a default, so `RiskRules()` is the policy."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    tier1_max_lines: int = Field(default=100, ge=0, description="Changed lines for tier 1.")
    tier1_max_files: int = Field(default=5, ge=0)
    tier3_min_lines: int = Field(default=1000, ge=1, description="More than this: tier 3.")
    tier3_min_files: int = Field(default=30, ge=1)
    path_rules: list[PathRule] = Field(default_factory=lambda: list(DEFAULT_PATH_RULES))
    test_patterns: list[str] = Field(
        default_factory=lambda: ["test_*", "*_test.*", "*tests/*", "*.test.*", "*.spec.*"]
    )
    doc_patterns: list[str] = Field(
        default_factory=lambda: ["*.md", "*.rst", "*.txt", "docs/*", "LICENSE*"],
        description="Not source: changing only these needs no test.",
    )
    tests_removed_tier: Tier = 3
    untested_code_tier: Tier = 2
    unverified_tier: Tier = 2
    binary_tier: Tier = 2
    unreviewed_tier: Tier = Field(
        default=2, description="No usable review by a second model: not tier 1."
    )
    review_changes_tier: Tier = 2
    review_reject_tier: Tier = 3


def matches(path: str, patterns: Sequence[str]) -> bool:
    """`path` (repo-relative) matches one of `patterns`; `*/auth/*` also matches `auth/x`."""
    name = path.rsplit("/", 1)[-1]
    return any(
        fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(f"/{path}", p)
        if "/" in p
        else fnmatch.fnmatchcase(name, p)
        for p in patterns
    )


def assess(
    diff: DiffStats, verification: Verification, review: DiffReview | None, rules: RiskRules
) -> RiskAssessment:
    """The tier of a change and every reason that raised it (tier 1 has its own reason)."""
    raised: list[tuple[Tier, str]] = [
        *_size(diff, rules),
        *_paths(diff.files, rules),
        *_tests(diff.files, rules),
        *_evidence(verification, rules),
        *_review(review, rules),
    ]
    if binary := [f.path for f in diff.files if f.binary and f.status != "deleted"]:
        raised.append((rules.binary_tier, f"binary files: {_some(binary)}"))
    tier: Tier = 1
    for raised_to, _ in raised:
        tier = max(tier, raised_to)
    reasons = [why for t, why in raised if t > 1]
    if tier == 1:
        reasons = [
            f"small verified change: {diff.lines_added + diff.lines_removed} lines in "
            f"{diff.files_changed} files, no sensitive path"
            + (f", approved by {_reviewer(review)}" if review and review.verdict else "")
        ]
    return RiskAssessment(tier=tier, reasons=[r[:300] for r in reasons[:50]])


def _size(diff: DiffStats, rules: RiskRules) -> list[tuple[Tier, str]]:
    lines, files = diff.lines_added + diff.lines_removed, diff.files_changed
    said = f"{lines} lines changed in {files} files"
    if lines > rules.tier3_min_lines or files > rules.tier3_min_files:
        return [
            (
                3,
                f"{said} (tier 3 above {rules.tier3_min_lines} lines or {rules.tier3_min_files} files)",
            )
        ]
    if lines > rules.tier1_max_lines or files > rules.tier1_max_files:
        return [
            (
                2,
                f"{said} (tier 1 up to {rules.tier1_max_lines} lines and {rules.tier1_max_files} files)",
            )
        ]
    return []


def _paths(files: Sequence[FileChange], rules: RiskRules) -> list[tuple[Tier, str]]:
    raised: list[tuple[Tier, str]] = []
    for rule in rules.path_rules:
        if hit := [f.path for f in files if matches(f.path, rule.patterns)]:
            raised.append((rule.tier, f"{rule.name} changed: {_some(hit)}"))
    return raised


def _tests(files: Sequence[FileChange], rules: RiskRules) -> list[tuple[Tier, str]]:
    tests = [f for f in files if matches(f.path, rules.test_patterns)]
    if removed := [f.path for f in tests if f.status == "deleted"]:
        return [(rules.tests_removed_tier, f"test files removed: {_some(removed)}")]
    source = [
        f.path
        for f in files
        if f not in tests
        and not matches(f.path, rules.doc_patterns)
        and not any(matches(f.path, r.patterns) for r in rules.path_rules)
    ]
    if source and not tests:
        return [
            (
                rules.untested_code_tier,
                f"source changed with no test added or changed: {_some(source)}",
            )
        ]
    return []


def _evidence(verification: Verification, rules: RiskRules) -> list[tuple[Tier, str]]:
    if verification == "fail":
        return [(3, "verification failed: some checks still fail")]
    if verification == "not_verified":
        return [(rules.unverified_tier, "no verification evidence: the task has no checks")]
    return []


def _review(review: DiffReview | None, rules: RiskRules) -> list[tuple[Tier, str]]:
    if review is None or review.verdict is None:
        why = review.note if review is not None and review.note else "none was asked for"
        return [(rules.unreviewed_tier, f"no review by a second model: {why}")]
    said = "; ".join(review.comments[:3])
    if review.verdict == "reject":
        return [(rules.review_reject_tier, f"{_reviewer(review)} rejected it: {said}")]
    if review.verdict == "request_changes":
        return [(rules.review_changes_tier, f"{_reviewer(review)} asked for changes: {said}")]
    return []


def _reviewer(review: DiffReview | None) -> str:
    return f"the second model {review.model}" if review and review.model else "a second model"


def _some(paths: Sequence[str]) -> str:
    return ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")


def action(tier: Tier, verification: Verification, auto_merge: bool, cap: Action) -> Action:
    """What the pull request of a change of `tier` gets: tier 3 a draft; tier 1 a merge only
    where the repo allows it (`auto_merge`) and every check passed (and then, in a repo with
    CI, only once its checks are green: the sidecar waits for them); else review. `cap` (the
    goal's autonomy level, `AUTONOMY_CAPS`) can only lower that."""
    due: Action = "review"
    if tier == 3:
        due = "draft"
    elif tier == 1 and auto_merge and verification == "pass":
        due = "merge"
    return due if _ORDER.index(due) <= _ORDER.index(cap) else cap


def cap_of(autonomy: object) -> Action:
    """The most a task's change may get: its goal's autonomy level (`metadata.autonomy`) as
    `AUTONOMY_CAPS` says; a task of no goal is capped by nothing, an unknown level to review."""
    if autonomy is None:
        return "merge"
    return AUTONOMY_CAPS.get(str(autonomy), "review")
