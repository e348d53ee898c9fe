"""Reading the loosely typed parts of a task (`metadata`, `complexity`) without guessing."""

from collections.abc import Mapping
from typing import Any, cast


def as_dict(value: object) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one."""
    return cast("dict[str, Any]", value) if isinstance(value, dict) else {}


def metadata(task: Mapping[str, Any]) -> dict[str, Any]:
    return as_dict(task.get("metadata"))
