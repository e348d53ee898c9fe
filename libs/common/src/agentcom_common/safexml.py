"""Reading and writing typed XML documents (`contracts.documents`), hardened for text a model or
a client wrote.

Reading refuses, before any document is built:
- more than `max_bytes` (a size attack, or a reply gone wrong): `TooLargeError`;
- any DTD, so no entity can be declared (billion laughs, quadratic blow-up) and no external
  entity or DTD can be fetched (defusedxml's `forbid_dtd`, `forbid_entities`,
  `forbid_external`): `InvalidError` code `xml_refused`;
- text that is not well-formed: `InvalidError` code `invalid_xml`;
- elements nested deeper than `MAX_DEPTH` (expat reads any depth, but building the document
  recurses once per level: 50,000 levels would end in a `RecursionError`): `xml_too_deep`;
- a well-formed document that does not fit its type: `InvalidError` naming the field.

The parser is the standard library's expat through defusedxml; pydantic-xml then reads the
parsed tree (`from_xml_tree`), so its own parser never sees the raw text.
"""

import xml.etree.ElementTree as StdET
from typing import Final, TypeVar

import defusedxml
import defusedxml.ElementTree as SafeET
from pydantic import ValidationError
from pydantic_xml import BaseXmlModel

from agentcom_common.errors import InvalidError, TooLargeError

MAX_BYTES: Final = 1_000_000  # a plan or three proposals are a few kB; a megabyte is plenty
MAX_DEPTH: Final = 32  # our documents nest 4 levels; a model has no reason to go further
D = TypeVar("D", bound=BaseXmlModel)


def read(doc: type[D], text: str | bytes, *, max_bytes: int = MAX_BYTES) -> D:
    """The document of type `doc` in `text`; raises the errors of the module docstring."""
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > max_bytes:
        raise TooLargeError(
            f"the XML is {len(raw)} bytes; at most {max_bytes} are read",
            code="xml_too_large",
        )
    try:
        root = SafeET.fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except defusedxml.DefusedXmlException as exc:
        raise InvalidError(
            f"the XML uses {exc}: DTDs and entities are refused, plain elements only",
            code="xml_refused",
        ) from None
    except StdET.ParseError as exc:
        raise InvalidError(f"the XML is not well-formed: {exc}", code="invalid_xml") from None
    if (depth := _depth(root)) > MAX_DEPTH:
        raise InvalidError(
            f"the XML nests {depth} or more elements deep; at most {MAX_DEPTH} are read",
            code="xml_too_deep",
        )
    try:
        return doc.from_xml_tree(root)  # pyright: ignore[reportUnknownMemberType]  # its root type is the backend's
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or root.tag
        raise InvalidError(
            f"<{root.tag}>: {where}: {first['msg']}"
            + (f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""),
            field=where,
        ) from None


def _depth(root: StdET.Element) -> int:
    """How deep `root` nests, counted without recursion, stopping past `MAX_DEPTH`."""
    deepest, stack = 0, [(root, 1)]
    while stack and deepest <= MAX_DEPTH:
        element, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in element)
    return deepest


def write(doc: BaseXmlModel) -> str:
    """The document as UTF-8 XML text, without a declaration (it goes inside a prompt)."""
    return doc.to_xml(skip_empty=True).decode()  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownVariableType]  # str | bytes by backend
