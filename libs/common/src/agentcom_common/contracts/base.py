"""Base models for everything that crosses a process boundary."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator


class Contract(BaseModel):
    """A message we read. Tolerant: a newer producer may add fields mid-deploy."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    schema_version: Literal[1] = 1


class Request(Contract):
    """A message a client sends us. Strict: a misspelt field is a 4xx naming it, not a default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _storable_text(cls, value: Any) -> Any:
        # JSON may carry a lone surrogate or NUL; Postgres stores neither, so refuse it here as
        # a 422 naming the field instead of failing at the INSERT
        _check_text(value)
        return value


def _check_str(value: str) -> None:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if value.isascii():  # no surrogate possible; skips the encode's copy
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None


def _check_text(value: Any) -> None:
    if isinstance(value, str):
        _check_str(value)
    elif isinstance(value, dict):
        for key, item in value.items():  # pyright: ignore[reportUnknownVariableType]
            _check_text(key)
            _check_text(item)
    elif isinstance(value, list | tuple):
        for item in value:  # pyright: ignore[reportUnknownVariableType]
            _check_text(item)
    elif isinstance(value, Request):
        return  # checked field by field by its own validator when it was built
    elif isinstance(value, BaseModel):
        for item in value.__dict__.values():
            _check_text(item)
