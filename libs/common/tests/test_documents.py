"""XML documents: each contract survives contract -> XML -> contract unchanged, and hostile XML
(entity bombs, external entities, DTDs, oversized or malformed text) is refused at once with an
error that says why."""

import time
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

from agentcom_common import safexml
from agentcom_common.contracts.documents import (
    GoalDocument,
    HubSnapshotDocument,
    PlanDocument,
    PlannedTaskDocument,
    ProposalDocument,
    ProposalsDocument,
    ScanFindingDocument,
    ScanResultDocument,
    TaskDocument,
)
from agentcom_common.contracts.hub import Autonomy, GoalState, GoalView, HubState, HubView
from agentcom_common.contracts.plan import Plan, PlannedTask
from agentcom_common.contracts.proposal import ProposalDraft
from agentcom_common.contracts.scan import ScanFinding, ScanResult, fingerprint
from agentcom_common.contracts.task import (
    Complexity,
    FileHint,
    Lane,
    TaskState,
    TaskView,
    Tier,
)
from agentcom_common.errors import InvalidError, TooLargeError

AT = datetime(2026, 12, 3, 7, 0, tzinfo=UTC)

PLAN = Plan(
    summary="add the CLI, then its docs",
    tasks=[
        PlannedTask(
            key="cli",
            title="Add the <cli> & its flags",  # markup characters are escaped, not parsed
            description="argparse entry point",
            success_criteria=["`tool --help` exits 0"],
            verification=["uv run tool --help", "test -f tool/cli.py"],
            files=["tool/__init__.py"],
            new_files=["tool/cli.py"],
            tier=Tier.TRIVIAL,
            estimated_tokens=20_000,
            estimated_usd=0.25,
        ),
        PlannedTask(
            title="Document it",
            description="a usage section",
            success_criteria=["README has a Usage section"],
            verification=["grep -q Usage README.md"],
            depends_on=[1, "cli"],
            files=["README.md"],
            estimated_tokens=5_000,
        ),
    ],
)

DRAFT = ProposalDraft(
    title="Batch the queue's claims",
    problem="p95 wait is 40 s while agents idle",
    solution="claim up to 5 tasks per round trip",
    rationale="wait latency is dominated by the claim loop",
    why_now="queue depth grew 3x this week",
    why_not="more state in the sidecar",
    impact="high",
    effort="medium",
    dependencies=["none"],
    related_files=["services/queue/src/agentcom_queue/store.py"],
    success_criteria=["p95 wait under 10 s at 50 queued tasks"],
)

GOAL = GoalView(
    id="goal-0123456789abcdef",
    state=GoalState.EXECUTING,
    title="A goal",
    description="",
    success_criteria=["one", "two"],
    repo="https://example.invalid/r.git",
    priority=Lane.LOW,
    budget_tokens=None,
    budget_usd=2.5,
    autonomy=Autonomy.REVIEW_PLAN,
    source="http",
    created_by="admin",
    attempt=1,
    reason="planned",
    plan=PLAN.model_dump(),
    plan_errors=[],
    cost_tokens=10,
    cost_usd=0.01,
    tasks_done=1,
    tasks_total=2,
    created_at=AT,
    updated_at=AT,
)

TASK = TaskView(
    id="task-1",
    state=TaskState.WORKING,
    priority=Lane.NORMAL,
    description="do it",
    generation=2,
    retry_count=0,
    max_retries=3,
    assigned_to="agent-a",
    complete_by=None,
    needed_capabilities=["python"],
    repo="r",
    repo_url="/srv/r.git",
    branch=None,
    file_hints=[FileHint(path="a.py", reason="here")],
    success_criteria=["done"],
    verification_steps=[],
    complexity=Complexity(
        tier=Tier.STANDARD, source="inferred", inferred_tier=None, confidence=0.5, reasons=["x"]
    ),
    depends_on=[],
    goal_id=None,
    metadata={"k": [1, 2]},
    last_error=None,
    blocked_reason=None,
    result=None,
    created_at=AT,
    updated_at=AT,
)

HUB = HubView(
    state=HubState.CONTEMPLATING,
    since=AT,
    reason="improving_done",
    paused=False,
    cycle=4,
    seconds_in_state={HubState.RESTING: 1.5, HubState.CONTEMPLATING: 0.25},
    watchdog_at=None,
    work="contemplation",
    leader="host:1:ab",
    goals_pending=0,
    goals_active=0,
)


def test_plan_round_trip_is_the_json_type() -> None:
    text = safexml.write(PlanDocument.of(PLAN))
    assert "&lt;cli&gt; &amp;" in text
    back = safexml.read(PlanDocument, text).contract()
    assert back == PLAN
    assert back == Plan.model_validate_json(PLAN.model_dump_json())  # same as the JSON path


def test_proposal_round_trip() -> None:
    text = safexml.write(ProposalsDocument(proposals=[ProposalDocument.of(DRAFT)] * 2))
    back = safexml.read(ProposalsDocument, text)
    assert [p.contract() for p in back.proposals] == [DRAFT, DRAFT]


@pytest.mark.parametrize(
    ("contract", "document"),
    [(GOAL, GoalDocument), (TASK, TaskDocument), (HUB, HubSnapshotDocument)],
)
def test_round_trip(
    contract: GoalView | TaskView | HubView,
    document: type[GoalDocument] | type[TaskDocument] | type[HubSnapshotDocument],
) -> None:
    text = safexml.write(document.of(contract))  # pyright: ignore[reportArgumentType]  # paired by the table
    assert safexml.read(document, text).contract() == contract


@pytest.mark.parametrize(
    ("contract", "document"),
    [
        (GoalView, GoalDocument),
        (TaskView, TaskDocument),
        (HubView, HubSnapshotDocument),
        (Plan, PlanDocument),
        (PlannedTask, PlannedTaskDocument),
        (ProposalDraft, ProposalDocument),
    ],
)
def test_every_field_of_the_contract_has_its_place_in_the_document(
    contract: type[BaseModel], document: type[BaseModel]
) -> None:
    """A field added to a contract must be added to its document too, or XML loses it."""
    assert set(contract.model_fields) - {"schema_version"} <= set(document.model_fields)


def test_a_field_that_does_not_fit_is_named() -> None:
    text = safexml.write(ProposalDocument.of(DRAFT)).replace("<impact>high", "<impact>huge")
    with pytest.raises(Exception, match="impact"):
        safexml.read(ProposalDocument, text).contract()
    with pytest.raises(InvalidError, match="estimated_tokens") as missing:
        safexml.read(
            PlanDocument, "<plan><task><title>t</title><description>d</description></task></plan>"
        )
    assert missing.value.field is not None


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<plan><summary>&lol9;</summary></plan>"""

EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE plan [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<plan><summary>&x;</summary></plan>"""

EXTERNAL_DTD = """<?xml version="1.0"?>
<!DOCTYPE plan SYSTEM "http://127.0.0.1:9/evil.dtd">
<plan><summary>s</summary></plan>"""


@pytest.mark.parametrize("hostile", [BILLION_LAUGHS, EXTERNAL, EXTERNAL_DTD])
def test_entities_and_dtds_are_refused_at_once(hostile: str) -> None:
    started = time.monotonic()
    with pytest.raises(InvalidError, match="DTDs and entities are refused") as refused:
        safexml.read(PlanDocument, hostile)
    assert refused.value.code == "xml_refused"
    # a bound far above what a refusal takes (microseconds), far below what expanding takes
    assert time.monotonic() - started < 5


def test_oversized_and_malformed_documents() -> None:
    huge = "<plan><summary>" + "x" * (safexml.MAX_BYTES + 1) + "</summary></plan>"
    with pytest.raises(TooLargeError, match="at most 1000000") as big:
        safexml.read(PlanDocument, huge)
    assert big.value.code == "xml_too_large"
    with pytest.raises(TooLargeError):
        safexml.read(PlanDocument, "<plan/>", max_bytes=3)
    with pytest.raises(InvalidError, match="not well-formed") as bad:
        safexml.read(PlanDocument, "<plan><summary>open")
    assert bad.value.code == "invalid_xml"
    deep = "<plan>" + "<a>" * 50_000 + "</a>" * 50_000 + "</plan>"  # expat is iterative
    with pytest.raises(InvalidError, match="at most 32") as nested:
        safexml.read(PlanDocument, deep)
    assert nested.value.code == "xml_too_deep"


SCAN = ScanResult(
    languages=["python"],
    findings=[
        ScanFinding(
            category="missing_dependency",
            severity="high",
            title="Declare the dependency <requests> & pin it",
            subject="requests",
            files=["pyproject.toml", "src/shop/http.py"],
            evidence=["src/shop/http.py imports requests"],
            fingerprint=fingerprint(
                "missing_dependency", ["pyproject.toml", "src/shop/http.py"], "requests"
            ),
        )
    ],
    skipped={"ruff": "no ruff binary on this agent"},
)


def test_scan_result_round_trip() -> None:
    text = safexml.write(ScanResultDocument.of(SCAN))
    assert "&lt;requests&gt; &amp;" in text
    assert safexml.read(ScanResultDocument, text).contract() == SCAN
    assert set(ScanFinding.model_fields) - {"schema_version"} <= set(
        ScanFindingDocument.model_fields
    )


def test_a_fingerprint_ignores_how_files_and_subjects_are_spelt() -> None:
    assert fingerprint("lint", ["./src/a.py", "b.py"], "Unused_Import") == fingerprint(
        "lint", ["b.py", "src//a.py", "b.py"], "unused import"
    )
    assert fingerprint("lint", ["a.py"], "F401") != fingerprint("lint", ["a.py"], "F841")


def test_a_hostile_scan_result_is_refused() -> None:
    bomb = BILLION_LAUGHS.replace("<plan>", "<scan>").replace("</plan>", "</scan>")
    with pytest.raises(InvalidError, match="DTDs and entities are refused"):
        safexml.read(ScanResultDocument, bomb)
    bad = safexml.write(ScanResultDocument.of(SCAN)).replace('severity="high"', 'severity="dire"')
    with pytest.raises(InvalidError, match="severity"):
        safexml.read(ScanResultDocument, bad).contract()
