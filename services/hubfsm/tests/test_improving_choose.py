"""Improving's filters as a table: verbs normalised onto axes, oscillation against the repo's
last kept findings, the two cooldowns, duplicates and the cap (highest severity first); and an
agent's scan result is checked, not trusted."""

from datetime import UTC, datetime, timedelta

import pytest

from agentcom_common.contracts.scan import ScanFinding, Severity, fingerprint
from agentcom_common.contracts.task import TaskView
from agentcom_hubfsm.improving import verbs
from agentcom_hubfsm.improving.choose import Kept, Policy, choose
from agentcom_hubfsm.improving.run import findings_of

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
POLICY = Policy(
    max_goals=5,
    fingerprint_cooldown=timedelta(days=7),
    file_cooldown=timedelta(days=1),
    window=3,
)


def finding(
    title: str, subject: str, files: list[str], severity: Severity = "medium", category: str = "c"
) -> ScanFinding:
    return ScanFinding(
        category=category,
        severity=severity,
        title=title,
        subject=subject,
        files=files,
        fingerprint=fingerprint(category, files, subject),
    )


def kept(f: ScanFinding, ago: timedelta, id_: str = "find-old", repo: str = "r") -> Kept:
    return Kept.of(id_, repo, f, NOW - ago)


@pytest.mark.parametrize(
    ("new", "old"),
    [
        ("Declare the dependency x", "Remove the unused dependency x"),
        ("Adding x", "Dropped x"),
        ("Inline the helper", "Extract a helper"),
        ("Lowers the retry limit", "Raise the retry limit"),
        ("Turn off the cache", "Enables the cache"),
        ("Merge the two modules", "Splitting the module"),
        ("Combine a and b", "Separate a from b"),
    ],
)
def test_opposite_verbs_undo_each_other_whatever_their_inflection(new: str, old: str) -> None:
    assert verbs.undoes(verbs.direction(new), verbs.direction(old))
    assert not verbs.undoes(verbs.direction(old), verbs.direction(old))


def test_a_verb_without_a_direction_undoes_nothing() -> None:
    assert verbs.direction("Fix ruff F401 in a.py") is None
    assert not verbs.undoes(None, verbs.direction("Remove x"))


def reasons(found: list[ScanFinding], history: list[Kept], policy: Policy = POLICY) -> list[str]:
    return [d.reason for d in choose([("r", f) for f in found], history, NOW, policy)]


def test_oscillation_needs_the_same_subject_or_files_within_the_window() -> None:
    removed = finding("Remove the unused dependency requests", "requests", ["pyproject.toml"])
    declare = finding("Declare the dependency Requests", "Requests", ["pyproject.toml"])
    other = finding("Declare the dependency httpx", "httpx", ["setup.cfg"])
    [why, fine] = reasons([declare, other], [kept(removed, timedelta(days=30))])
    assert why.startswith("oscillation: it undoes finding find-old"), why
    assert fine.startswith("kept"), fine
    # past the window (3 newer kept findings in between): no longer an oscillation
    newer = [kept(finding(f"Fix {n}", f"s{n}", [f"f{n}"]), timedelta(days=20)) for n in range(3)]
    history = [*newer, kept(removed, timedelta(days=30))]
    assert reasons([declare], history)[0].startswith("kept")
    # another repo's history counts for nothing
    assert reasons([declare], [kept(removed, timedelta(days=1), repo="elsewhere")])[0].startswith(
        "kept"
    )


def test_cooldowns_by_fingerprint_and_by_file() -> None:
    lint = finding("Fix ruff F401 in a.py", "F401", ["a.py"])
    same = finding("Fix ruff F401 in ./a.py", "f401", ["./a.py"])  # spelt differently
    assert same.fingerprint == lint.fingerprint
    assert reasons([same], [kept(lint, timedelta(days=6))])[0].startswith("fingerprint cooldown")
    assert reasons([same], [kept(lint, timedelta(days=8))])[0].startswith("kept")
    doc = finding("Add docstrings to a", "a", ["a.py"], "low")
    assert reasons([doc], [kept(lint, timedelta(hours=23))])[0].startswith("file cooldown: a.py")
    assert reasons([doc], [kept(lint, timedelta(hours=25))])[0].startswith("kept")
    # within one cycle: the second finding on a file waits
    assert [r.split(":")[0] for r in reasons([lint, doc], [])] == ["kept", "file cooldown"]


SEVERITIES: list[Severity] = ["low", "high", "medium", "high"]


def test_the_cap_keeps_the_highest_severities_and_duplicates_are_dropped() -> None:
    found = [
        finding(f"Fix {n}", f"s{n}", [f"f{n}.py"], severity)
        for n, severity in enumerate(SEVERITIES)
    ]
    policy = Policy(2, POLICY.fingerprint_cooldown, POLICY.file_cooldown, POLICY.window)
    decided = choose([("r", f) for f in [*found, found[1]]], [], NOW, policy)
    assert [(d.finding.title, d.kept) for d in decided if d.kept] == [
        ("Fix 1", True),
        ("Fix 3", True),
    ]
    dropped = {d.finding.title: d.reason for d in decided if not d.kept}
    assert dropped["Fix 2"].startswith("over the cycle's cap of 2")
    assert dropped["Fix 0"].startswith("over the cycle's cap of 2")
    assert [d.reason for d in decided].count("duplicate: the same finding twice this cycle") == 1


def scan_task(state: str, result: object) -> TaskView:
    return TaskView.model_validate(
        {
            "id": "t1",
            "state": state,
            "priority": "low",
            "description": "Improvement scan",
            "generation": 1,
            "retry_count": 0,
            "max_retries": 1,
            "assigned_to": "s1",
            "complete_by": None,
            "needed_capabilities": ["scan"],
            "repo": "/srv/shop",
            "branch": None,
            "file_hints": [],
            "success_criteria": [],
            "verification_steps": [],
            "complexity": {
                "tier": "standard",
                "source": "inferred",
                "inferred_tier": None,
                "confidence": 0.5,
                "reasons": [],
            },
            "depends_on": [],
            "goal_id": "improving-1",
            "metadata": {"executor": "scan"},
            "last_error": "agent gone" if state != "completed" else None,
            "blocked_reason": None,
            "result": result,
            "created_at": NOW,
            "updated_at": NOW,
        }
    )


def test_an_agents_scan_result_is_checked_not_trusted() -> None:
    honest = finding("Fix ruff F401 in a.py", "F401", ["a.py"])
    forged = honest.model_dump(mode="json") | {"fingerprint": "0" * 16}
    [read], why = findings_of(scan_task("completed", {"details": {"scan": {"findings": [forged]}}}))
    assert why is None
    assert read.fingerprint == honest.fingerprint  # recomputed from the finding itself
    for result, says in (
        (None, "Input should be"),
        ({"details": "scan"}, "Input should be"),
        ({"details": {"scan": {"findings": [{"category": "Bad Category!"}]}}}, "unreadable"),
    ):
        found, why = findings_of(scan_task("completed", result))
        assert (found, why is not None) == ([], True), why
        assert "its scan result is unreadable" in str(why), why
        assert says in str(why), why
    assert findings_of(scan_task("failed", None)) == ([], "its scan ended failed: agent gone")
