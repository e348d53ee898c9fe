"""Reading tool calls out of a model reply, whichever way the model wrote them.

In order: native `message.tool_calls`; XML-style `<tool_call>{json}</tool_call>` and Qwen's
`<function=name><parameter=key>value</parameter></function>`; then JSON objects written in the
content (bare or in code fences). JSON is read with `json.JSONDecoder.raw_decode` from each `{`
or `[`, so arguments full of braces (code) parse; a regex cannot match nested JSON. Arguments
are not coerced here: each tool's pydantic model does that from its schema, so `"true"` stays a
string where the schema says string.
"""

import json
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, cast

_DECODER: Final = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict[str, Any])

    def key(self) -> str:
        """Identity for repetition checks: name plus canonical JSON of the arguments."""
        return self.name + ":" + json.dumps(self.arguments, sort_keys=True, default=str)


@dataclass(frozen=True, slots=True)
class Parsed:
    calls: list[ToolCall]
    text: str
    """The content without thinking blocks and tool-call markup: the final answer if no calls."""
    source: str
    """native | xml | json | none: where the calls came from (for tests and diagnostics)."""


def parse(message: Mapping[str, Any], known_tools: Collection[str]) -> Parsed:
    content = _strip_thinking(str(message.get("content") or ""))
    native = list(_native(message.get("tool_calls")))
    if native:
        return Parsed(native, content.strip(), "native")
    xml, rest = _xml(content)
    if xml:
        return Parsed(xml, rest.strip(), "xml")
    found = [c for c in _json_calls(content) if c.name in known_tools]
    if found:
        return Parsed(found, "", "json")
    return Parsed([], content.strip(), "none")


def _strip_thinking(content: str) -> str:
    while (start := content.find("<think>")) != -1:
        end = content.find("</think>", start)
        if end == -1:
            return content[:start]
        content = content[:start] + content[end + len("</think>") :]
    return content


def _arguments(raw: object) -> dict[str, Any] | None:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError:
            return None
    return _as_dict(raw)


def _as_dict(raw: object) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        return None
    return {str(k): v for k, v in cast(dict[object, Any], raw).items()}


def _call_from(obj: object) -> ToolCall | None:
    body = _as_dict(obj)
    if body is None:
        return None
    body = _as_dict(body.get("function")) or body  # OpenAI shape {"function": {...}}
    name = body.get("name")
    if not isinstance(name, str) or not name:
        return None
    args = _arguments(body.get("arguments", body.get("parameters", {})))
    return None if args is None else ToolCall(name, args)


def _native(raw: object) -> Iterator[ToolCall]:
    if not isinstance(raw, list):
        return
    for item in cast(list[object], raw):
        call = _call_from(item)
        if call is not None:
            yield call


def _decoded_values(text: str) -> Iterator[object]:
    """Every JSON object or array in `text`, scanning left to right, outermost first."""
    index = 0
    while index < len(text):
        starts = [i for i in (text.find("{", index), text.find("[", index)) if i != -1]
        if not starts:
            return
        start = min(starts)
        try:
            value, end = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError:
            index = start + 1
            continue
        yield value
        index = end


def _json_calls(text: str) -> Iterator[ToolCall]:
    for value in _decoded_values(text):
        items = cast(list[object], value) if isinstance(value, list) else [value]
        for item in items:
            call = _call_from(item)
            if call is not None:
                yield call


def _xml(content: str) -> tuple[list[ToolCall], str]:
    calls: list[ToolCall] = []
    rest: list[str] = []
    index = 0
    while (start := content.find("<tool_call>", index)) != -1:
        end = content.find("</tool_call>", start)
        if end == -1:
            break
        rest.append(content[index:start])
        inner = content[start + len("<tool_call>") : end].strip()
        calls.extend(
            _qwen_functions(inner) if inner.startswith("<function=") else _json_calls(inner)
        )
        index = end + len("</tool_call>")
    rest.append(content[index:])
    if not calls and "<function=" in content:
        return list(_qwen_functions(content)), ""
    return calls, "".join(rest)


def _qwen_functions(text: str) -> Iterator[ToolCall]:
    """`<function=name><parameter=key>value</parameter>…</function>` (Qwen3-Coder's format)."""
    index = 0
    while (start := text.find("<function=", index)) != -1:
        name_end = text.find(">", start)
        close = text.find("</function>", name_end)
        if name_end == -1 or close == -1:
            return
        name = text[start + len("<function=") : name_end].strip()
        yield ToolCall(name, dict(_qwen_parameters(text[name_end + 1 : close])))
        index = close + len("</function>")


def _qwen_parameters(body: str) -> Iterator[tuple[str, Any]]:
    index = 0
    while (start := body.find("<parameter=", index)) != -1:
        key_end = body.find(">", start)
        close = body.find("</parameter>", key_end)
        if key_end == -1 or close == -1:
            return
        key = body[start + len("<parameter=") : key_end].strip()
        value = body[key_end + 1 : close].strip("\n")
        yield key, _maybe_json(value)
        index = close + len("</parameter>")


def _maybe_json(value: str) -> Any:
    # a list parameter (argv) arrives as JSON text; scalars stay strings and the tool's schema
    # coerces them ("5" -> 5 for an int field) while a string field keeps "5" or "true" as is
    stripped = value.strip()
    if stripped[:1] in ("[", "{"):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            return value
    return value
