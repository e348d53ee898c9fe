"""Reading a contemplation reply: the `<proposals>` document (hardened, `safexml`) or, from a
model that answered JSON anyway, a list of proposal objects; then keeping what may be kept.

`keep` drops, each with its reason (recorded in the cycle's report): a proposal that does not
fit `ProposalDraft`, one naming an out-of-scope topic (in its title, problem, solution or
related files; case-insensitive), one with the title of a pending proposal or of another in
the same reply, and any past the cycle's cap.
"""

import re
from collections.abc import Sequence
from typing import Any, Final, cast

from pydantic import ValidationError

from agentcom_common import safexml
from agentcom_common.contracts.documents import ProposalsDocument
from agentcom_common.contracts.proposal import ProposalDraft
from agentcom_common.errors import AgentcomError
from agentcom_hubfsm.goals import planparse

_THINK: Final = re.compile(r"<think>.*?(?:</think>|\Z)", re.S | re.I)
_XML: Final = re.compile(r"<proposals\b[^>]*>.*?</proposals\s*>|<proposals\s*/>", re.S | re.I)


class UnreadableReplyError(Exception):
    """The reply holds no `<proposals>` document and no JSON list of proposals."""


def read(text: str) -> tuple[list[ProposalDraft], list[str]]:
    """(the proposals that fit the type, why each other one was dropped)."""
    text = _THINK.sub("", text)
    if (found := _XML.search(text)) is not None:
        try:
            doc = safexml.read(ProposalsDocument, found.group(0))
        except AgentcomError as exc:
            raise UnreadableReplyError(exc.detail) from None
        raw: list[Any] = [p.model_dump() for p in doc.proposals]
    else:
        try:
            data = planparse.find_json(text)
        except planparse.UnreadablePlanError:
            raise UnreadableReplyError("no <proposals> document and no JSON in the reply") from None
        if isinstance(data, dict):
            data = cast("dict[str, Any]", data).get("proposals", [data])
        raw = cast("list[Any]", data) if isinstance(data, list) else []
    drafts: list[ProposalDraft] = []
    dropped: list[str] = []
    for i, item in enumerate(raw, 1):
        try:
            drafts.append(ProposalDraft.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            dropped.append(f"proposal {i}: {where}: {first['msg']}")
    return drafts, dropped


def keep(
    drafts: Sequence[ProposalDraft],
    *,
    out_of_scope: Sequence[str],
    pending: Sequence[str],
    limit: int,
) -> tuple[list[ProposalDraft], list[str]]:
    """(the proposals kept, in order; why each other one was dropped)."""
    kept: list[ProposalDraft] = []
    dropped: list[str] = []
    seen = {_norm(t) for t in pending}
    topics = [t.lower() for t in out_of_scope if t.strip()]
    for draft in drafts:
        said = " ".join((draft.title, draft.problem, draft.solution, *draft.related_files)).lower()
        if hit := next((t for t in topics if t in said), None):
            dropped.append(f'"{draft.title}": out of scope ({hit})')
        elif _norm(draft.title) in seen:
            dropped.append(f'"{draft.title}": already proposed')
        elif len(kept) >= limit:
            dropped.append(f'"{draft.title}": past the cycle\'s {limit}')
        else:
            kept.append(draft)
            seen.add(_norm(draft.title))
    return kept, dropped


def _norm(title: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", title.lower()).split())
