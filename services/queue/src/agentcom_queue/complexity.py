"""Complexity tier inference: a heuristic that returns tier, confidence and its reasons.

Same signals as the first implementation (words, file hints, verification steps, keywords),
with one change: a task with no signal at all is `standard` at confidence 0, not "unknown",
so every task has a tier the scheduler can route on.
"""

from typing import Any, Final

from agentcom_common.contracts.task import Complexity, SubmitTask, Tier

COMPLEX_WORDS: Final = (
    "refactor",
    "architect",
    "migration",
    "redesign",
    "migrate",
    "security",
    "overhaul",
    "rewrite",
)
TRIVIAL_WORDS: Final = (
    "fix typo",
    "update readme",
    "bump version",
    "rename",
    "typo",
    "format",
    "lint",
    "version bump",
)


_ORDER: Final = (Tier.STANDARD, Tier.COMPLEX, Tier.TRIVIAL)  # ties go to the first


def _vote(count: int, low: int, high: int) -> Tier:
    if count <= low:
        return Tier.TRIVIAL
    return Tier.COMPLEX if count > high else Tier.STANDARD


def infer(description: str, files: int, steps: int) -> tuple[Tier, float, list[str]]:
    text = description.lower()
    words = len(text.split())
    complex_hits = [k for k in COMPLEX_WORDS if k in text]
    trivial_hits = [k for k in TRIVIAL_WORDS if k in text]
    reasons = [f"{words} words", f"{files} file hints", f"{steps} verification steps"]
    if complex_hits:
        confidence = 0.7 + 0.1 * (files > 3) + 0.1 * (steps > 3) + 0.1 * (words > 50)
        return Tier.COMPLEX, round(confidence, 2), [*reasons, f"keywords {complex_hits}"]
    if trivial_hits and files <= 3 and steps <= 3:
        return Tier.TRIVIAL, 0.9 if words < 10 else 0.75, [*reasons, f"keywords {trivial_hits}"]
    if words == 0 and files == 0 and steps == 0:
        return Tier.STANDARD, 0.0, ["no signal"]
    votes = (_vote(words, 9, 50), _vote(files, 0, 3), _vote(steps, 0, 3))
    best = max(_ORDER, key=votes.count)  # the first of the most voted
    if best is Tier.TRIVIAL:  # no trivial keyword: small is not the same as trivial
        best = Tier.STANDARD
        reasons.append("small but no trivial keyword")
    return best, _SHARE[votes.count(best)], reasons


_SHARE: Final = tuple(round(n / 3, 2) for n in range(4))  # n of the 3 votes, as a confidence


def classify(task: SubmitTask) -> Complexity:
    return Complexity.model_validate(classify_json(task))


def classify_json(task: SubmitTask) -> dict[str, Any]:
    """`classify(task)` as JSON values, without building the model (submits store this)."""
    tier, confidence, reasons = infer(
        task.description, len(task.file_hints), len(task.verification_steps)
    )
    if task.complexity_tier is not None:
        return {
            "schema_version": 1,
            "tier": task.complexity_tier.value,
            "source": "explicit",
            "inferred_tier": tier.value,
            "confidence": 1.0,
            "reasons": [*reasons, f"given as {task.complexity_tier}"],
        }
    return {
        "schema_version": 1,
        "tier": tier.value,
        "source": "inferred",
        "inferred_tier": tier.value,
        "confidence": confidence,
        "reasons": reasons,
    }
