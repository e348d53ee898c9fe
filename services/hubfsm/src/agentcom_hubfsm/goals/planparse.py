"""Reading a model's reply as a `Plan`: plain JSON, JSON inside prose, or an XML `<plan>`.

Models wrap their answer: in `<think>` blocks (dropped first), in prose, in a fenced
```json block. So the reply is tried as a whole, then each fenced block, then the first
`<plan>` element, then each outermost balanced `{...}` in the prose, and the first of these
that is JSON (or XML) is the plan. Field names are read loosely (`depends-on`, `dependencies`,
`criteria`...): a model's spelling is not worth a re-prompt; its content is.

XML is read first as the typed `<plan>` document the XML prompt asks for
(`contracts.documents.PlanDocument` through `agentcom_common.safexml`: DTDs and entities refused,
size and depth bounded, so a billion-laughs reply cannot eat the hub's memory); a `<plan>` in a
looser spelling (attributes, other tag names) is then read field by field with the same
defusedxml guards. Every failure is `UnreadablePlanError` with messages for the re-prompt.
"""

import json
import re
import xml.etree.ElementTree as StdET
from collections.abc import Iterator
from typing import Any, Final, cast

import defusedxml
import defusedxml.ElementTree as SafeET
from pydantic import ValidationError

from agentcom_common import safexml
from agentcom_common.contracts.documents import PlanDocument
from agentcom_common.contracts.plan import Plan
from agentcom_common.errors import InvalidError, TooLargeError

NO_PLAN: Final = (
    "no plan found: the reply holds no JSON object and no <plan> element; answer with the "
    "plan as one JSON object"
)
_THINK: Final = re.compile(r"<think>.*?(?:</think>|\Z)", re.S | re.I)
_FENCE: Final = re.compile(r"```[ \t]*([A-Za-z0-9_-]*)[^\n]*\n(.*?)```", re.S)
_XML: Final = re.compile(r"<plan\b[^>]*>.*?</plan\s*>", re.S | re.I)
_MAX_STARTS: Final = 50  # balanced-object tries: bounds the work a brace-heavy reply causes
ALIASES: Final = {
    "id": "key",
    "name": "title",
    "criteria": "success_criteria",
    "acceptance_criteria": "success_criteria",
    "verify": "verification",
    "verification_steps": "verification",
    "verification_commands": "verification",
    "checks": "verification",
    "commands": "verification",
    "depends": "depends_on",
    "dependencies": "depends_on",
    "deps": "depends_on",
    "touches": "files",
    "files_touched": "files",
    "files_to_change": "files",
    "changes": "files",
    "creates": "new_files",
    "files_to_create": "new_files",
    "complexity": "tier",
    "complexity_tier": "tier",
    "tokens": "estimated_tokens",
    "estimate_tokens": "estimated_tokens",
    "cost_tokens": "estimated_tokens",
    "usd": "estimated_usd",
    "cost_usd": "estimated_usd",
    "estimate_usd": "estimated_usd",
}


class UnreadablePlanError(Exception):
    """The reply holds no plan, or one that does not fit the schema; `errors` say how."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def parse(text: str) -> Plan:
    """The plan in a model's reply; raises `UnreadablePlanError`."""
    data = _unwrap(_find(_THINK.sub("", text)))
    try:
        return Plan.model_validate(_normal(data))
    except ValidationError as exc:
        raise UnreadablePlanError(_messages(exc)) from None


def find_json(text: str) -> object:
    """The JSON object in a model's reply (whole, fenced or in prose), for other answers than
    plans (the verification judge's); raises `UnreadablePlanError`."""
    return _find(_THINK.sub("", text))


def _unwrap(data: object) -> object:
    """A bare list is the tasks; `{"plan": {...}}` is the plan: the wrapper says nothing."""
    if isinstance(data, list):
        return {"tasks": cast("list[object]", data)}
    if isinstance(data, dict):
        body = cast("dict[str, object]", data)
        inner = body.get("plan")
        if "tasks" not in body and isinstance(inner, dict | list):
            return _unwrap(cast("object", inner))
        return body
    return data


def _find(text: str) -> object:
    bad: list[str] = []
    whole = text.strip()
    if whole.startswith(("{", "[")):
        try:
            return json.loads(whole)
        except ValueError as exc:
            bad.append(f"the reply is not valid JSON: {exc}")
    for lang, body in _FENCE.findall(text):
        if lang.lower() == "xml" or body.lstrip().lower().startswith("<plan"):
            return _from_xml(body.strip())
        if lang.lower() in ("json", ""):
            try:
                return json.loads(body)
            except ValueError as exc:
                bad.append(f"the ```{lang} block is not valid JSON: {exc}")
    return _in_prose(text, bad)


def _in_prose(text: str, bad: list[str]) -> object:
    if (xml := _XML.search(text)) is not None:
        return _from_xml(xml.group(0))
    for candidate in _objects(text):
        if candidate == text.strip():
            continue  # the whole reply, already tried (and reported) as JSON
        try:
            found: object = json.loads(candidate)
        except ValueError as exc:
            bad.append(f"the object at '{candidate[:40]}' is not valid JSON: {exc}")
            continue
        if isinstance(found, dict):
            return found  # pyright: ignore[reportUnknownVariableType]  # any JSON object
    raise UnreadablePlanError(bad or [NO_PLAN])


def _objects(text: str) -> Iterator[str]:
    """Each outermost balanced `{...}`, left to right (strings and escapes respected)."""
    at, starts = 0, 0
    while (start := text.find("{", at)) != -1 and starts < _MAX_STARTS:
        starts += 1
        end = _closing(text, start)
        if end is None:
            at = start + 1
            continue
        yield text[start : end + 1]
        at = end + 1


def _closing(text: str, start: int) -> int | None:
    depth, in_string, escaped = 0, False, False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i
    return None


_HOSTILE: Final = frozenset({"xml_refused", "invalid_xml", "xml_too_deep"})


def _from_xml(snippet: str) -> dict[str, Any]:
    try:
        document = safexml.read(PlanDocument, snippet)
    except TooLargeError as exc:
        raise UnreadablePlanError([_ours(exc.detail)]) from None
    except InvalidError as exc:
        if exc.code in _HOSTILE:
            raise UnreadablePlanError([_ours(exc.detail)]) from None
    else:
        try:
            return document.contract().model_dump()
        except ValidationError:
            pass  # our tags, but a field in another spelling (`<criteria>`): read it loosely
    return _loose_xml(snippet)  # not our document's spelling: read it field by field


def _ours(detail: str) -> str:
    return detail.replace("the XML", "the <plan> XML", 1)


def _loose_xml(snippet: str) -> dict[str, Any]:
    try:
        root = SafeET.fromstring(snippet, forbid_dtd=True)
    except StdET.ParseError as exc:
        raise UnreadablePlanError([f"the <plan> XML is not well-formed: {exc}"]) from None
    except defusedxml.DefusedXmlException as exc:
        raise UnreadablePlanError([f"the <plan> XML uses {exc}: plain elements only"]) from None
    tasks: list[dict[str, Any]] = []
    out: dict[str, Any] = {"tasks": tasks}
    for child in root:
        tag = _key(child.tag)
        if tag == "task":
            tasks.append(_xml_task(child))
        elif tag == "tasks":
            tasks.extend(_xml_task(t) for t in child)
        else:
            out[tag] = _text(child)
    return out


def _xml_task(element: StdET.Element) -> dict[str, Any]:
    """Attributes and children as fields; a child with children of its own is a list."""
    task: dict[str, Any] = {_key(k): v for k, v in element.attrib.items()}
    for child in element:
        task[_key(child.tag)] = [_text(c) for c in child] if len(child) else _text(child)
    return task


def _text(element: StdET.Element) -> str:
    return "".join(element.itertext()).strip()


def _key(raw: str) -> str:
    key = re.sub(r"[\s-]+", "_", raw.strip().lower())
    return ALIASES.get(key, key)


def _normal(data: object) -> object:
    """Field names in our spelling (`_key`), at the plan's level and each task's."""
    if not isinstance(data, dict):
        return data
    out = {_key(str(k)): v for k, v in cast("dict[object, object]", data).items()}
    tasks = out.get("tasks")
    if isinstance(tasks, list):
        out["tasks"] = [_normal(t) for t in cast("list[object]", tasks)]
    return out


def _messages(exc: ValidationError) -> list[str]:
    """`task 2: tier: Input should be 'trivial', 'standard' or 'complex' (got 'medium')`."""
    seen: list[str] = []
    for error in exc.errors():
        loc = list(error["loc"])
        where = ""
        if len(loc) >= 2 and loc[0] == "tasks" and isinstance(loc[1], int):
            where, loc = f"task {loc[1] + 1}: ", loc[2:]
        # a union's members show as tags in the location (`depends_on.0.int`): not the field's
        parts = [str(p) for p in loc if p not in ("int", "str", "constrained-str")]
        got = (
            ""
            if error["type"] == "missing"
            else f" (got {json.dumps(error['input'], default=str)[:60]})"
        )
        message = f"{where}{'.'.join(parts) or 'plan'}: {error['msg']}{got}"
        if message not in seen:
            seen.append(message)
    return seen
