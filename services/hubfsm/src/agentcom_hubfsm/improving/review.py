"""The model-assisted review of a repo's recent diff, part of an improving cycle when
`hub_improving_review` is on.

The hub reads the patches of the repo's last commits from its read-only mirror
(`RepoCache.recent_diff`: nothing of the repo runs), asks a model through the gateway for a
`<review>` document (charged to the `improving` budget: the hub announced `improving` before
the cycle started), and turns each `<finding>` into a `ScanFinding` of category `review`, its
fingerprint computed here like every scanner's, which the cycle then filters with the
scanners' findings. A finding naming a file the diff does not touch is dropped (the model
reviews this diff, nothing else), so is one that does not fit the type.

The gateway refuses a call when the budget is spent (`TooManyRequestsError`): that repo's
review is `refused`, and no other repo is reviewed this cycle (each would be refused too).
What the calls cost (tokens, USD) is summed into the cycle's report.
"""

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from pydantic import ValidationError

from agentcom_common import safexml
from agentcom_common.contracts.documents import ReviewDocument
from agentcom_common.contracts.llm import ChatReply, ChatRequest
from agentcom_common.contracts.scan import (
    CycleBudget,
    RepoReview,
    ScanFinding,
    fingerprint,
    normal_file,
)
from agentcom_common.contracts.task import Tier
from agentcom_common.errors import AgentcomError, TooManyRequestsError
from agentcom_hubfsm.repocache import RepoCache

Chat = Callable[[ChatRequest], Awaitable[ChatReply]]
CALLER: Final = "hubfsm.improving"
CATEGORY: Final = "review"
MARK: Final = "You review the recent changes of a repository"
_THINK: Final = re.compile(r"<think>.*?(?:</think>|\Z)", re.S | re.I)
_XML: Final = re.compile(r"<review\b[^>]*>.*?</review\s*>|<review\s*/>", re.S | re.I)
_TOUCHED: Final = re.compile(r"^diff --git a/(.+?) b/(.+)$", re.M)

SYSTEM: Final = f"""{MARK} for an automated improvement loop: \
find what is worth one small follow-up change each (a bug, an unhandled case, a missing test \
for new code, an unsafe pattern, a misleading name or comment). Only what the diff shows.

Answer with one XML document and nothing else:
<review>
  <finding severity="low|medium|high">
    <title>What to do, verb first (Add, Fix, Remove, ...), under 200 characters</title>
    <subject>What it is about: a function, a module, a setting</subject>
    <files><file>a path the diff touches</file></files>
    <evidence><line>the line or fact in the diff that shows it</line></evidence>
  </finding>
</review>
At most {{limit}} findings, the most important first. <review/> when nothing is worth doing."""


class UnreadableReviewError(Exception):
    """The reply holds no readable `<review>` document."""


@dataclass(slots=True)
class Spent:
    """The model calls of one cycle: what the `improving` budget paid."""

    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0

    def add(self, reply: ChatReply) -> None:
        self.calls += 1
        self.tokens_in += reply.tokens_in
        self.tokens_out += reply.tokens_out
        self.cost_usd += reply.cost_usd

    def budget(self) -> CycleBudget:
        return CycleBudget(
            calls=self.calls,
            tokens_in=self.tokens_in,
            tokens_out=self.tokens_out,
            cost_usd=round(self.cost_usd, 6),
        )


@dataclass(slots=True)
class Reviewed:
    """The reviews of a cycle: their findings by repo, each repo's review, and the spend."""

    found: list[tuple[str, ScanFinding]] = field(default_factory=list[tuple[str, ScanFinding]])
    reviews: list[RepoReview] = field(default_factory=list[RepoReview])
    spent: Spent = field(default_factory=Spent)


def touched(patches: str) -> set[str]:
    return {normal_file(m.group(2)) for m in _TOUCHED.finditer(patches)}


def read(text: str, files: set[str], limit: int) -> tuple[list[ScanFinding], list[str]]:
    """(the findings of a reply, why each other one was dropped). Raises
    `UnreadableReviewError` when the reply holds no readable `<review>` document."""
    found = _XML.search(_THINK.sub("", text))
    if found is None:
        raise UnreadableReviewError("the reply holds no <review> document")
    try:
        doc = safexml.read(ReviewDocument, found.group(0))
    except AgentcomError as exc:
        raise UnreadableReviewError(exc.detail) from None
    kept: list[ScanFinding] = []
    dropped: list[str] = []
    for n, item in enumerate(doc.findings, 1):
        named = [normal_file(f) for f in item.files if f.strip()]
        if not named or not set(named) <= files:
            dropped.append(f"finding {n}: names no file or one the diff does not touch")
            continue
        if len(kept) >= limit:
            dropped.append(f"finding {n}: past the review's {limit}")
            continue
        try:
            kept.append(
                ScanFinding(
                    category=CATEGORY,
                    severity=item.severity,
                    title=item.title.strip()[:200],
                    subject=item.subject.strip()[:500],
                    files=sorted(set(named))[:50],
                    evidence=[e.strip()[:500] for e in item.evidence if e.strip()][:10],
                    fingerprint=fingerprint(CATEGORY, named, item.subject),
                )
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            dropped.append(f"finding {n}: {where}: {first['msg']}")
    return kept, dropped


@dataclass(frozen=True, slots=True)
class Reviewer:
    cache: RepoCache
    chat: Chat
    commits: int
    max_chars: int
    limit: int = 10

    async def all(self, repos: list[str]) -> Reviewed:
        """Each repo in turn, until the budget refuses one."""
        done = Reviewed()
        for n, repo in enumerate(repos):
            review = await self.one(repo, done)
            done.reviews.append(review)
            if review.state == "refused":
                done.reviews += [
                    RepoReview(repo=r, state="refused", note="the improving budget is spent")
                    for r in repos[n + 1 :]
                ]
                break
        return done

    async def one(self, repo: str, done: Reviewed) -> RepoReview:
        try:
            head, patches = await self.cache.recent_diff(repo, self.commits, self.max_chars)
        except AgentcomError as exc:
            return RepoReview(repo=repo, state="failed", note=f"{exc.code}: {exc.detail}")
        if head is None:
            return RepoReview(repo=repo, state="nothing", note="no commit to review")
        prompt = (
            f"Repository: {repo}\nHEAD: {head}\n\n"
            f"The patches of its last {self.commits} commits, newest first"
            f"{' (cut short)' if len(patches) >= self.max_chars else ''}:\n\n{patches}"
        )
        try:
            reply = await self.chat(
                ChatRequest(
                    messages=[
                        {"role": "system", "content": SYSTEM.format(limit=self.limit)},
                        {"role": "user", "content": prompt},
                    ],
                    tier=Tier.STANDARD,
                    caller=CALLER,
                    options={"max_tokens": 4096, "temperature": 0.2},
                )
            )
        except TooManyRequestsError as exc:
            return RepoReview(
                repo=repo, head=head, state="refused", note=f"{exc.code}: {exc.detail}"
            )
        except AgentcomError as exc:
            note = f"the model could not be asked: {exc.code}: {exc.detail}"
            return RepoReview(repo=repo, head=head, state="failed", note=note)
        done.spent.add(reply)
        try:
            found, dropped = read(reply.content, touched(patches), self.limit)
        except UnreadableReviewError as exc:
            return RepoReview(repo=repo, head=head, state="failed", note=str(exc)[:500])
        done.found += [(repo, f) for f in found]
        note = "; ".join(dropped)[:1000] or None
        return RepoReview(repo=repo, head=head, state="reviewed", findings=len(found), note=note)
