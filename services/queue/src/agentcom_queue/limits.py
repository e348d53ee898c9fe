"""Size limits at the queue's edges: no accepted task is too large to move over NATS.

A task travels whole in the claim reply, the list pages and the events, all bounded by NATS's
max_payload (1 MB by default). So a submit (its task as JSON) and a report (its `result`) are
each held to `queue_max_task_bytes`, which is lowered to a quarter of max_payload at start:
submitted fields plus a result then always fit one reply. A batch reply that would still not fit
is cut to what fits (`fit`); the caller asks again for the rest.
"""

from typing import TypeVar

from pydantic import BaseModel
from pydantic_core import to_json

from agentcom_common.contracts.task import ReportTask, SubmitTask
from agentcom_common.errors import TooLargeError

_REPLY_OVERHEAD = 1024  # the reply's envelope around its tasks: keys, cursor, headroom


def effective(setting: int, max_payload: int) -> int:
    """The task limit to enforce: the setting, or a quarter of max_payload if that is less."""
    return min(setting, max_payload // 4)


def check_task(task: SubmitTask, limit: int, field: str = "body") -> None:
    size = len(task.model_dump_json(exclude_defaults=True))
    if size > limit:
        raise TooLargeError(
            f"{field}: the task is {size} bytes as JSON; the limit is {limit} bytes "
            "(AGENTCOM_QUEUE_MAX_TASK_BYTES); keep large data in the repo and name it in "
            "metadata or file_hints",
            code="task_too_large",
            field=field,
        )


def check_tasks(tasks: list[SubmitTask], limit: int) -> None:
    for index, task in enumerate(tasks):
        check_task(task, limit, f"tasks.{index}")


def check_result(report: ReportTask, limit: int, field: str = "result") -> None:
    if not report.result:
        return
    size = len(to_json(report.result))
    if size > limit:
        raise TooLargeError(
            f"{field}: the result is {size} bytes as JSON; the limit is {limit} bytes "
            "(AGENTCOM_QUEUE_MAX_TASK_BYTES); keep large output in the repo or a log",
            code="result_too_large",
            field=field,
        )


M = TypeVar("M", bound=BaseModel)


def fit(items: list[M], budget: int) -> tuple[list[M], list[M], list[M]]:
    """Split `items` for one reply of `budget` bytes: (the leading ones that fit, the rest, and
    those too large for any reply on their own).

    The last can only be a task stored before the limits existed (or under a larger
    max_payload): it can never be delivered, so it must not be offered again and again.
    """
    kept: list[M] = []
    rest: list[M] = []
    oversized: list[M] = []
    used = _REPLY_OVERHEAD
    for item in items:
        size = len(item.model_dump_json()) + 1
        if size + _REPLY_OVERHEAD > budget:
            oversized.append(item)
        elif rest or used + size > budget:
            rest.append(item)
        else:
            kept.append(item)
            used += size
    return kept, rest, oversized
