"""Culture ship names for agents registered without a name (Iain M. Banks)."""

import secrets
from collections.abc import Collection
from typing import Final

SHIPS: Final = (
    "sleeper-service",
    "grey-area",
    "just-read-the-instructions",
    "so-much-for-subtlety",
    "no-more-mr-nice-guy",
    "very-little-gravitas-indeed",
    "of-course-i-still-love-you",
    "problem-child",
    "gunboat-diplomat",
    "honest-mistake",
    "contents-may-differ",
    "mistake-not",
    "rapid-random-happiness",
    "death-and-gravity",
    "frank-exchange-of-views",
    "youthful-indiscretion",
    "zero-gravitas",
    "limiting-factor",
    "use-of-weapons",
    "xenophobe",
    "quietly-confident",
    "trade-surplus",
    "irregular-apocalypse",
    "killing-time",
    "happy-idiot-talk",
    "reasonable-excuse",
    "prosthetic-conscience",
    "bad-for-business",
    "size-isnt-everything",
    "fate-amenable-to-change",
    "a-series-of-unlikely-explanations",
    "tactical-grace",
    "pure-big-mad-boat-thing",
    "steely-glint",
    "attitude-adjuster",
    "determinist",
    "ends-of-invention",
    "it-wishes",
    "subtle-shift-in-emphasis",
    "i-thought-he-was-with-you",
    "break-even",
    "no-fixed-abode",
    "the-nervously-optimistic",
    "value-judgment",
    "lasting-damage",
    "just-testing",
    "serious-callers-only",
    "shoot-them-later",
    "jaundiced-outlook",
    "different-tan",
    "not-invented-here",
    "eighth-arc-in-progression",
    "room-with-a-view",
    "what-is-the-answer-and-why",
    "only-slightly-bent",
    "bias-cut",
    "sense-amid-madness",
    "lightly-seared",
    "experiencing-a-significant-gravitas-shortfall",
    "what-are-the-alarm-signals",
    "anticipation-of-a-new-lovers-arrival",
    "refreshingly-unconcerned",
    "passing-by",
)


def unused(taken: Collection[str]) -> str:
    """A ship name nobody has; past the list, a name with a number so it never runs out."""
    free = [name for name in SHIPS if name not in taken]
    if free:
        return secrets.choice(free)
    while (name := f"{secrets.choice(SHIPS)}-{secrets.randbelow(10_000)}") in taken:
        pass
    return name
