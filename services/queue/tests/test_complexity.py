import pytest

from agentcom_common.contracts.task import SubmitTask, Tier
from agentcom_queue import complexity


@pytest.mark.parametrize(
    ("description", "files", "steps", "tier"),
    [
        ("fix typo in README", 1, 0, Tier.TRIVIAL),
        ("rename the helper", 0, 0, Tier.TRIVIAL),
        ("refactor the scheduler into modules", 2, 1, Tier.COMPLEX),
        ("security review of token storage", 0, 0, Tier.COMPLEX),
        ("add a --json flag to the status command and document it", 2, 2, Tier.STANDARD),
        ("x", 0, 0, Tier.STANDARD),  # small but no trivial keyword: not trivial
        (" ".join(["word"] * 60), 5, 5, Tier.COMPLEX),  # every vote says complex
        ("fix typo", 5, 0, Tier.STANDARD),  # a typo across five files is not trivial
    ],
)
def test_inferred_tier(description: str, files: int, steps: int, tier: Tier) -> None:
    inferred, confidence, reasons = complexity.infer(description, files, steps)

    assert inferred is tier
    assert 0 <= confidence <= 1
    assert reasons


def test_complex_keyword_confidence_grows_with_size() -> None:
    small = complexity.infer("refactor it", 0, 0)[1]
    large = complexity.infer("refactor " + "word " * 60, 4, 4)[1]

    assert small == 0.7
    assert large == 1.0


def test_an_explicit_tier_wins_and_keeps_the_inference() -> None:
    task = SubmitTask(description="fix typo", complexity_tier=Tier.COMPLEX)

    result = complexity.classify(task)

    assert result.tier is Tier.COMPLEX
    assert result.source == "explicit"
    assert result.inferred_tier is Tier.TRIVIAL


@pytest.mark.parametrize(
    "task",
    [
        SubmitTask(description="fix typo", complexity_tier=Tier.COMPLEX),
        SubmitTask(description="refactor the scheduler"),
        SubmitTask.model_validate({"description": "x", "file_hints": [{"path": "a.py"}] * 5}),
    ],
)
def test_the_stored_json_is_the_model_dumped(task: SubmitTask) -> None:
    assert complexity.classify_json(task) == complexity.classify(task).model_dump(mode="json")
