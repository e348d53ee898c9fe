"""Which findings of a cycle become goals (pure: the inputs are read by `run`, nothing is
stored here). In order of severity (highest first), each finding is:

    1. dropped as a duplicate of one already seen this cycle (same repo and fingerprint);
    2. dropped if it undoes one of the repo's last `window` kept findings (`verbs.undoes`: the
       same axis, the opposite sign) about the same subject or the same files;
    3. dropped if its fingerprint was kept within `fingerprint_cooldown`;
    4. dropped if it touches a file a kept finding touched within `file_cooldown`, or one kept
       earlier in this cycle;
    5. dropped past the cycle's cap of `max_goals`;
    6. else kept.

Every decision carries its reason, which `GET /api/hub/findings` shows, and its kind (`kept`,
`duplicate`, `oscillation`, `fingerprint_cooldown`, `file_cooldown`, `cap`), which the cycle's
report counts.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from agentcom_common.contracts.scan import RANK, ScanFinding, normal_file, normal_subject
from agentcom_hubfsm.improving import verbs


@dataclass(frozen=True, slots=True)
class Kept:
    """An earlier kept finding, as the filters need it."""

    id: str
    repo: str
    fingerprint: str
    title: str
    subject: str
    files: frozenset[str]
    at: datetime

    @classmethod
    def of(cls, id_: str, repo: str, f: ScanFinding, at: datetime) -> "Kept":
        files = frozenset(normal_file(p) for p in f.files)
        return cls(id_, repo, f.fingerprint, f.title, normal_subject(f.subject), files, at)


@dataclass(frozen=True, slots=True)
class Policy:
    max_goals: int
    fingerprint_cooldown: timedelta
    file_cooldown: timedelta
    window: int


@dataclass(frozen=True, slots=True)
class Decision:
    repo: str
    finding: ScanFinding
    kept: bool
    reason: str
    kind: str


def _undone(f: ScanFinding, files: frozenset[str], history: list[Kept], window: int) -> Kept | None:
    new = verbs.direction(f.title)
    subject = normal_subject(f.subject)
    for k in history[:window]:
        if verbs.undoes(new, verbs.direction(k.title)) and (
            k.subject == subject or k.files == files
        ):
            return k
    return None


def _why_dropped(
    repo: str, f: ScanFinding, history: list[Kept], now: datetime, p: Policy
) -> tuple[str, str] | None:
    """(kind, reason) of a drop, or None."""
    files = frozenset(normal_file(x) for x in f.files)
    mine = [k for k in history if k.repo == repo]  # newest first
    if (k := _undone(f, files, mine, p.window)) is not None:
        return "oscillation", (
            f"oscillation: it undoes finding {k.id} ({k.title!r}), kept at {k.at:%Y-%m-%d %H:%M:%S}"
        )
    for k in mine:
        if k.fingerprint == f.fingerprint and k.at >= now - p.fingerprint_cooldown:
            return "fingerprint_cooldown", (
                f"fingerprint cooldown: the same finding ({k.id}) was kept at "
                f"{k.at:%Y-%m-%d %H:%M:%S}, within {p.fingerprint_cooldown}"
            )
    for k in mine:
        if (shared := files & k.files) and k.at >= now - p.file_cooldown:
            return "file_cooldown", (
                f"file cooldown: {', '.join(sorted(shared))} had finding {k.id} kept at "
                f"{k.at:%Y-%m-%d %H:%M:%S}, within {p.file_cooldown}"
            )
    return None


def choose(
    found: list[tuple[str, ScanFinding]], history: list[Kept], now: datetime, p: Policy
) -> list[Decision]:
    """`found`: (repo, finding) of this cycle; `history`: kept findings, newest first."""
    ordered = sorted(found, key=lambda rf: (-RANK[rf[1].severity], rf[0], rf[1].category))
    history = list(history)
    seen: set[tuple[str, str]] = set()
    decided: list[Decision] = []
    kept = 0
    for n, (repo, f) in enumerate(ordered):
        if (repo, f.fingerprint) in seen:
            twice = "duplicate: the same finding twice this cycle"
            decided.append(Decision(repo, f, False, twice, "duplicate"))
            continue
        seen.add((repo, f.fingerprint))
        why = _why_dropped(repo, f, history, now, p)
        if why is None and kept >= p.max_goals:
            why = (
                "cap",
                f"over the cycle's cap of {p.max_goals} goals (higher severities came first)",
            )
        if why is not None:
            decided.append(Decision(repo, f, False, why[1], why[0]))
            continue
        kept += 1
        decided.append(
            Decision(
                repo, f, True, f"kept: {f.severity} severity, nothing recent against it", "kept"
            )
        )
        history.insert(0, Kept.of(f"this cycle's #{n + 1}", repo, f, now))
    return decided
