"""JSON in at every edge: one parser, one set of rules, for HTTP bodies and NATS requests alike.

Python's `json` accepts what JSON does not (`NaN`, `Infinity`), turns `1e999` into `inf`, and
nests as deep as the stack allows; Postgres stores no NUL and no lone surrogate. Each of these
once got past an edge and failed later, where it hurt more: a 500, a task stored but never
serialisable again. `loads` refuses them all up front with an `InvalidError` that says what is
wrong and where (`field` is the body for broken syntax, else the path of the bad value).
`check_tree` applies the same value rules to an object that was parsed elsewhere.

The contracts check the same rules again field by field (`contracts.base`), for models built
in Python; while a value `loads` returned is being validated (`parsed()`), those checks are
skipped: they would walk every string of a 1,000-task batch a second time, on the hot path.
"""

import contextlib
import json
import math
from collections.abc import Generator
from contextvars import ContextVar
from typing import Any, Final

from agentcom_common.errors import InvalidError

DEPTH_CEILING: Final = 100
"""The deepest any value may nest, whatever the settings say: serialisers recurse."""


class _NonFinite:
    """What the parser hands back for `NaN`, `Infinity` or an out-of-range number."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _float(text: str) -> float | _NonFinite:
    value = float(text)
    return value if math.isfinite(value) else _NonFinite(text)


def loads(data: bytes | str, *, max_depth: int = DEPTH_CEILING) -> Any:
    """Parse one JSON document under the rules above, or raise `InvalidError`."""
    try:
        value = json.loads(data, parse_float=_float, parse_constant=_NonFinite)
    except json.JSONDecodeError as exc:
        raise InvalidError(
            f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
            field="body",
        ) from None
    except UnicodeDecodeError as exc:
        raise InvalidError(
            f"invalid JSON: not UTF-8 text (byte {exc.start})", field="body"
        ) from None
    except RecursionError:  # the C scanner recurses per level; far past any limit of ours
        raise _too_deep("body", max_depth) from None
    check_tree(value, max_depth=max_depth)
    return value


_parsed: ContextVar[bool] = ContextVar("agentcom_wire_parsed", default=False)


@contextlib.contextmanager
def parsed() -> Generator[None]:
    """Validate, inside this block, only values that `loads` returned (module docstring)."""
    token = _parsed.set(True)
    try:
        yield
    finally:
        _parsed.reset(token)


def checked() -> bool:
    """True inside `parsed()`: the value being validated passed `loads` already."""
    return _parsed.get()


def check_tree(value: Any, *, max_depth: int = DEPTH_CEILING, at: str = "") -> None:
    """Refuse non-finite numbers, NUL or lone surrogates, and nesting past `max_depth`.

    Iterative, so a deep value cannot exhaust the stack here either. `at` prefixes the path.
    """
    limit = min(max_depth, DEPTH_CEILING)
    stack: list[tuple[Any, int, str]] = [(value, 0, at)]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, dict | list):
            if depth >= limit:
                raise _too_deep(_top(path), limit)
            if isinstance(item, dict):
                for key, child in item.items():  # pyright: ignore[reportUnknownVariableType]
                    if isinstance(key, str):
                        _check_text(key, path)  # a bad key is named by its object: never echoed
                    where = f"{path}.{key}" if path else str(key)  # pyright: ignore[reportUnknownArgumentType]
                    stack.append((child, depth + 1, where))  # pyright: ignore[reportUnknownArgumentType]
            else:
                for index, child in enumerate(item):  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
                    where = f"{path}.{index}" if path else str(index)
                    stack.append((child, depth + 1, where))  # pyright: ignore[reportUnknownArgumentType]
        elif isinstance(item, str):
            _check_text(item, path)
        elif isinstance(item, _NonFinite) or (isinstance(item, float) and not math.isfinite(item)):
            text = item.text if isinstance(item, _NonFinite) else repr(item)
            raise InvalidError(
                f"{path or 'body'}: {text} is not a finite JSON number "
                "(JSON has no NaN or Infinity, and a number must fit a double)",
                field=path or "body",
            )


def storable(value: Any) -> Any:
    """A copy of `value` that `check_tree` accepts, for text we did not write (a command's
    output, a model's words): NUL and lone surrogates become U+FFFD, a non-finite number its
    name as text. What we report must never be a report the hub refuses.
    """
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(str(k)): storable(v) for k, v in value.items()}  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]  # pyright: ignore[reportUnknownVariableType]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def storable_text(text: str) -> str:
    if not text.isascii():
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text.replace("\x00", "\ufffd")


def _check_text(text: str, path: str) -> None:
    if "\x00" in text:
        raise InvalidError(
            f"{path or 'body'}: must not contain NUL characters", field=path or "body"
        )
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidError(
                f"{path or 'body'}: must be valid Unicode text (no lone surrogates)",
                field=path or "body",
            ) from None


def _top(path: str) -> str:
    return path.split(".", 1)[0] if path else "body"


def _too_deep(field: str, limit: int) -> InvalidError:
    return InvalidError(
        f"{field}: JSON nested deeper than {limit} levels (AGENTCOM_JSON_MAX_DEPTH)",
        field=field,
    )
