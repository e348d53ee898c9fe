"""Base models for everything that crosses a process boundary."""

from typing import Literal

from pydantic import BaseModel, ConfigDict


class Contract(BaseModel):
    """A message we read. Tolerant: a newer producer may add fields mid-deploy."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    schema_version: Literal[1] = 1


class Request(Contract):
    """A message a client sends us. Strict: a misspelt field is a 4xx naming it, not a default."""

    model_config = ConfigDict(frozen=True, extra="forbid")
