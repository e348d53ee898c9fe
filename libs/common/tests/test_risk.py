"""Diffs to risk tiers: one row per rule, and the reasons that say why."""

from typing import Literal

import pytest

from agentcom_common.contracts.delivery import Action, DiffReview, DiffStats, FileChange
from agentcom_common.risk import PathRule, RiskRules, Verification, action, assess, cap_of

Status = Literal["added", "modified", "deleted"]


def diff(*files: tuple[str, Status, int, int] | tuple[str, Status, int, int, bool]) -> DiffStats:
    changed = [
        FileChange(path=f[0], status=f[1], added=f[2], removed=f[3], binary=len(f) > 4)
        for f in files
    ]
    return DiffStats(
        files=changed,
        files_changed=len(changed),
        lines_added=sum(f.added for f in changed),
        lines_removed=sum(f.removed for f in changed),
    )


APPROVED = DiffReview(verdict="approve", comments=["fine"], model="reviewer:7b", writer="coder:8b")
SMALL = ("src/app.py", "modified", 10, 2)
SIX: list[tuple[str, Status, int, int]] = [(f"src/m{i}.py", "added", 1, 0) for i in range(6)]
TESTED = ("tests/test_app.py", "modified", 8, 0)
CASES: list[tuple[str, DiffStats, Verification, int, str]] = [
    ("small, tested, verified", diff(SMALL, TESTED), "pass", 1, "small verified change"),
    ("docs only need no test", diff(("docs/x.md", "modified", 5, 1)), "pass", 1, "small"),
    ("no checks at all", diff(SMALL, TESTED), "not_verified", 2, "no verification evidence"),
    ("checks still failing", diff(SMALL, TESTED), "fail", 3, "verification failed"),
    ("source without a test", diff(SMALL), "pass", 2, "no test added or changed: src/app.py"),
    (
        "a test file deleted",
        diff(SMALL, ("tests/test_old.py", "deleted", 0, 40)),
        "pass",
        3,
        "test files removed",
    ),
    (
        "over tier 1's lines",
        diff(("src/app.py", "modified", 90, 20), TESTED),
        "pass",
        2,
        "118 lines changed in 2 files",
    ),
    (
        "over tier 1's files",
        diff(*SIX, TESTED),
        "pass",
        2,
        "in 7 files",
    ),
    (
        "over tier 3's lines",
        diff(("src/app.py", "added", 1200, 0), TESTED),
        "pass",
        3,
        "tier 3 above 1000 lines",
    ),
    (
        "CI config",
        diff((".github/workflows/ci.yml", "modified", 2, 1)),
        "pass",
        3,
        "CI config changed: .github/workflows/ci.yml",
    ),
    ("deploy", diff(("deploy/compose.yaml", "modified", 2, 1)), "pass", 3, "deploy changed"),
    (
        "auth code",
        diff(("services/api/auth/tokens.py", "modified", 2, 1), TESTED),
        "pass",
        3,
        "auth changed",
    ),
    (
        "top-level auth package",
        diff(("auth/tokens.py", "modified", 2, 1), TESTED),
        "pass",
        3,
        "auth changed",
    ),
    (
        "a migration",
        diff(("app/migrations/versions/0002_x.py", "added", 20, 0)),
        "pass",
        2,
        "migrations changed",
    ),
    (
        "dependencies",
        diff(("pyproject.toml", "modified", 1, 1), ("uv.lock", "modified", 30, 2)),
        "pass",
        2,
        "dependencies changed: pyproject.toml, uv.lock",
    ),
    (
        "a binary file",
        diff(("img/logo.png", "added", 0, 0, True)),
        "pass",
        2,
        "binary files: img/logo.png",
    ),
]


@pytest.mark.parametrize(
    ("name", "change", "verification", "tier", "reason"), CASES, ids=[c[0] for c in CASES]
)
def test_a_diff_gets_its_tier_with_the_reason(
    name: str, change: DiffStats, verification: Verification, tier: int, reason: str
) -> None:
    assessed = assess(change, verification, APPROVED, RiskRules())

    assert assessed.tier == tier, (name, assessed)
    assert any(reason in why for why in assessed.reasons), assessed.reasons


def test_the_highest_rule_wins_and_every_raising_rule_says_why() -> None:
    change = diff(("uv.lock", "modified", 3, 1), (".ci/run", "modified", 1, 1))

    assessed = assess(change, "not_verified", APPROVED, RiskRules())

    assert assessed.tier == 3
    assert [r.split(":")[0] for r in assessed.reasons] == [
        "CI config changed",
        "dependencies changed",
        "no verification evidence",
    ]


def test_thresholds_and_path_rules_are_settings() -> None:
    rules = RiskRules(
        tier1_max_lines=5,
        path_rules=[PathRule(name="billing", patterns=["*/billing/*"], tier=3)],
    )

    assert assess(diff(SMALL, TESTED), "pass", APPROVED, rules).tier == 2
    billing = diff(("src/billing/x.py", "modified", 1, 0), TESTED)
    assert assess(billing, "pass", APPROVED, rules).tier == 3
    ci_and_test = diff((".github/ci.yml", "modified", 1, 0), ("tests/test_ci.py", "added", 2, 0))
    # the rules replaced the default CI rule
    assert assess(ci_and_test, "pass", APPROVED, rules).tier == 1


REVIEWS: list[tuple[str, DiffReview | None, int, str]] = [
    ("approved", APPROVED, 1, "approved by the second model reviewer:7b"),
    ("none asked", None, 2, "no review by a second model: none was asked for"),
    (
        "no usable reply",
        DiffReview(note="the gateway is unreachable: ConnectError", writer="coder:8b"),
        2,
        "no review by a second model: the gateway is unreachable",
    ),
    (
        "changes asked",
        DiffReview(verdict="request_changes", comments=["name the constant"], model="r"),
        2,
        "the second model r asked for changes: name the constant",
    ),
    (
        "rejected",
        DiffReview(verdict="reject", comments=["deletes the auth check"], model="r"),
        3,
        "the second model r rejected it: deletes the auth check",
    ),
]


@pytest.mark.parametrize(("name", "review", "tier", "reason"), REVIEWS, ids=[r[0] for r in REVIEWS])
def test_the_second_models_review_is_evidence_of_the_tier(
    name: str, review: DiffReview | None, tier: int, reason: str
) -> None:
    assessed = assess(diff(SMALL, TESTED), "pass", review, RiskRules())

    assert assessed.tier == tier, (name, assessed)
    assert any(reason in why for why in assessed.reasons), assessed.reasons


ACTIONS: list[tuple[Literal[1, 2, 3], Verification, bool, Action, str]] = [
    (1, "pass", True, "merge", "merge"),
    (1, "pass", False, "merge", "review"),  # the repo does not allow it
    (1, "not_verified", True, "merge", "review"),
    (2, "pass", True, "merge", "review"),
    (3, "pass", True, "merge", "draft"),
    (1, "pass", True, "review", "review"),  # the goal's autonomy lowers it
    (1, "pass", True, "draft", "draft"),
    (3, "pass", True, "review", "draft"),  # and never raises it
    (2, "pass", True, "merge", "review"),
]


@pytest.mark.parametrize(("tier", "verification", "auto_merge", "cap", "expected"), ACTIONS)
def test_a_tier_decides_what_its_pull_request_gets(
    tier: Literal[1, 2, 3], verification: Verification, auto_merge: bool, cap: Action, expected: str
) -> None:
    assert action(tier, verification, auto_merge, cap) == expected


def test_a_goals_autonomy_level_caps_what_its_changes_get() -> None:
    assert (cap_of(None), cap_of("auto"), cap_of("review_plan"), cap_of("yolo")) == (
        "merge",
        "merge",
        "review",
        "review",
    )
