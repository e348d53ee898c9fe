"""Requests refuse text Postgres cannot store (NUL, lone surrogates), at any depth."""

from typing import Any, cast

import pytest
from pydantic import ValidationError

from agentcom_common.contracts.task import SubmitTask, SubmitTasks


@pytest.mark.parametrize("bad", ["nul \x00 inside", "lone \udcf4 surrogate"])
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"description": "{bad}"}, "description"),
        ({"description": "ok", "metadata": {"k": ["{bad}"]}}, "metadata"),
        ({"description": "ok", "metadata": {"{bad}": 1}}, "metadata"),
        ({"description": "ok", "file_hints": [{"path": "{bad}"}]}, "file_hints"),
    ],
)
def test_bad_text_is_refused_in_a_batch_naming_its_place(
    bad: str, body: dict[str, object], field: str
) -> None:
    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("{bad}", bad)
        if isinstance(value, dict):
            pairs = cast("dict[Any, Any]", value)
            return {fill(k): fill(v) for k, v in pairs.items()}
        if isinstance(value, list):
            items = cast("list[Any]", value)
            return [fill(v) for v in items]
        return value

    tasks = [{"description": "fine"}, fill(body)]
    with pytest.raises(ValidationError) as refused:
        SubmitTasks.model_validate({"tasks": tasks})

    assert refused.value.errors()[0]["loc"][:3] == ("tasks", 1, field)


def test_plain_and_non_ascii_text_is_accepted() -> None:
    task = SubmitTask(description="ünïcode ✓ and ascii", metadata={"ключ": ["значение"]})

    assert SubmitTasks(tasks=[task]).tasks[0].description == "ünïcode ✓ and ascii"
