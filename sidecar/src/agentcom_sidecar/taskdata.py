"""Reading the loosely typed parts of a task (`metadata`, `complexity`) without guessing."""

import re
from collections.abc import Mapping
from typing import Any, cast


def as_dict(value: object) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one."""
    return cast("dict[str, Any]", value) if isinstance(value, dict) else {}


def metadata(task: Mapping[str, Any]) -> dict[str, Any]:
    return as_dict(task.get("metadata"))


_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def safe_id(task_id: str) -> bool:
    """A task id that is safe as a directory name (no `/`, no `..`)."""
    return _SAFE_ID.fullmatch(task_id) is not None
