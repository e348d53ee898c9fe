"""What a finding would do, as a direction on an axis, read from its title: "Remove the unused
dependency x" is (presence, -1), "Declare the dependency x" (presence, +1). Two findings on the
same axis with opposite signs undo each other. Words are normalised before they are looked up:
lowercase, inflections off ("removes", "removed", "removing" -> remove; "splitting" -> split),
and synonyms folded ("declare", "introduce", "create" all add), so "Drop X" undoes "Adding X"
though no raw word pair matches."""

import re
from typing import Final

Direction = tuple[str, int]

# base verb -> (axis, sign)
VERBS: Final[dict[str, Direction]] = {
    **dict.fromkeys(
        ("add", "declare", "introduce", "create", "include", "insert"), ("presence", 1)
    ),
    **dict.fromkeys(
        ("remove", "delete", "drop", "undeclare", "exclude", "strip"), ("presence", -1)
    ),
    "extract": ("extraction", 1),
    "factor": ("extraction", 1),
    "inline": ("extraction", -1),
    **dict.fromkeys(("increase", "raise", "bump", "grow", "widen"), ("magnitude", 1)),
    **dict.fromkeys(("decrease", "lower", "reduce", "shrink", "narrow"), ("magnitude", -1)),
    **dict.fromkeys(("enable", "activate", "unignore"), ("toggle", 1)),
    **dict.fromkeys(("disable", "deactivate", "ignore", "suppress"), ("toggle", -1)),
    **dict.fromkeys(("split", "divide", "separate"), ("division", 1)),
    **dict.fromkeys(("merge", "combine", "join", "consolidate", "unify"), ("division", -1)),
}
# the two-word forms: "turn on", "switch off", "pull out"
PHRASES: Final[dict[tuple[str, str], Direction]] = {
    ("turn", "on"): ("toggle", 1),
    ("switch", "on"): ("toggle", 1),
    ("turn", "off"): ("toggle", -1),
    ("switch", "off"): ("toggle", -1),
    ("pull", "out"): ("extraction", 1),
    ("get", "rid"): ("presence", -1),
}
_WORD = re.compile(r"[a-z]+")


def base(word: str) -> str:
    """The word without its inflection, when that leaves a known verb."""
    word = word.lower()
    if word in VERBS:
        return word
    for suffix, put in (
        ("ies", "y"),
        ("ing", ""),
        ("ing", "e"),
        ("ed", ""),
        ("ed", "e"),
        ("es", ""),
        ("s", ""),
        ("d", ""),
    ):
        if word.endswith(suffix):
            stem = word[: -len(suffix)] + put
            if stem in VERBS:
                return stem
            if len(stem) > 2 and stem[-1] == stem[-2] and stem[:-1] in VERBS:  # splitting
                return stem[:-1]
    return word


def direction(text: str) -> Direction | None:
    """The first verb of `text` that has a direction, or None (a "fix" goes nowhere)."""
    words = [base(w) for w in _WORD.findall(text.lower())]
    for i, word in enumerate(words):
        if i + 1 < len(words) and (phrase := PHRASES.get((word, words[i + 1]))):
            return phrase
        if word in VERBS:
            return VERBS[word]
    return None


def undoes(new: Direction | None, old: Direction | None) -> bool:
    return new is not None and old is not None and new[0] == old[0] and new[1] == -old[1]
