"""Base models for everything that crosses a process boundary."""

import functools
import math
import types
from datetime import datetime
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    SecretStr,
    ValidationInfo,
    field_validator,
)

from agentcom_common import wire
from agentcom_common.errors import InvalidError


class Contract(BaseModel):
    """A message we read. Tolerant: a newer producer may add fields mid-deploy."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    schema_version: Literal[1] = 1


class Request(Contract):
    """A message a client sends us. Strict: a misspelt field is a 4xx naming it, not a default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_coercion(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic's lax mode reads "3" and true as the number 3 and 1, and "yes" as true: a
        # typo'd request would run with a value nobody wrote. A number field takes a JSON
        # number, a flag takes true or false; every other type keeps its JSON-friendly parsing
        # (enums and datetimes from strings), which strict mode would refuse from HTTP bodies.
        kinds = _scalar_kinds(cls, info.field_name or "")
        if not kinds or value is None:
            return value
        if datetime in kinds:  # lax mode reads a number as seconds since 1970
            if isinstance(value, int | float):
                raise ValueError("must be an ISO 8601 date-time string, not a number")
            return value
        flag = bool in kinds
        if isinstance(value, bool) and not flag:
            raise ValueError("must be a JSON number, not true or false")
        if isinstance(value, str):
            raise ValueError(
                "must be true or false" if flag else "must be a JSON number, not a string"
            )
        if flag and len(kinds) == 1 and not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _storable_text(cls, value: Any, info: ValidationInfo) -> Any:
        # JSON may carry a lone surrogate or NUL; Postgres stores neither, so refuse it here as
        # a 422 naming the field instead of failing at the INSERT. A request built in Python
        # (not parsed by `wire.loads`) meets the same rules: no NaN, no runaway nesting. What
        # `wire.loads` parsed met them already (`wire.parsed`).
        if wire.checked():
            return value
        try:
            _check_text(value, info.field_name or "")
        except InvalidError as exc:
            raise ValueError(exc.detail) from None
        return value


@functools.cache
def _scalar_kinds(model: type[BaseModel], name: str) -> frozenset[type]:
    """{int}, {float}, {bool} (or a mix), or {datetime}, when field `name` is only such
    scalars (or None)."""
    field = model.model_fields.get(name)
    if field is None:
        return frozenset()
    kinds: set[type] = set()
    pending: list[Any] = [field.annotation]
    while pending:
        annotation = pending.pop()
        if get_origin(annotation) in (Union, types.UnionType):
            pending.extend(get_args(annotation))
        elif annotation in (int, float, bool, datetime):
            kinds.add(annotation)
        elif annotation is not type(None):
            return frozenset()  # str | int and the like: leave it to pydantic
    return frozenset(kinds)


def _json_value(value: dict[str, object]) -> dict[str, object]:
    if wire.checked():  # parsed by `wire.loads`, which applied these rules
        return value
    try:
        wire.check_tree(value)
    except InvalidError as exc:
        raise ValueError(exc.detail) from None
    return value


JsonObject = Annotated[dict[str, object], AfterValidator(_json_value)]
"""A free-form object in a message we read (not a `Request`, which checks every field): the
edge's rules still hold (no NaN or Infinity, storable text, bounded depth), so what one path
would store as null, or fail on later, is refused where it enters."""


def _check_str(value: str) -> None:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if value.isascii():  # no surrogate possible; skips the encode's copy
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None


def _check_text(value: Any, at: str) -> None:
    if isinstance(value, str):
        _check_str(value)
    elif isinstance(value, SecretStr):  # an API key is stored too; never echoed in the error
        _check_str(value.get_secret_value())
    elif isinstance(value, dict):
        wire.check_tree(value, at=at)
    elif isinstance(value, list | tuple):  # may hold models, which check_tree does not look into
        for index, item in enumerate(value):  # pyright: ignore[reportUnknownVariableType, reportUnknownArgumentType]
            _check_text(item, f"{at}.{index}")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number (JSON has no NaN or Infinity)")
    elif isinstance(value, Request):
        return  # checked field by field by its own validator when it was built
    elif isinstance(value, BaseModel):
        for name, item in value.__dict__.items():
            _check_text(item, f"{at}.{name}")
