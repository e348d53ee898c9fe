"""Queue settings: the common ones plus the queue's own, prefixed `AGENTCOM_QUEUE_`."""

from datetime import timedelta

from pydantic import Field

from agentcom_common.settings import CommonSettings, Interval


class QueueSettings(CommonSettings):
    queue_retry_backoff: Interval = Field(
        default=timedelta(seconds=5),
        description="Delay before a failed task is offered again; doubles with each retry.",
    )
    queue_max_task_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="Largest task, as JSON, a submit may carry, and largest `result` a report may "
        "carry (413 `task_too_large` / `result_too_large`); the queue lowers it to a quarter of "
        "NATS's max_payload so every task it accepts fits the claim and list replies.",
    )
    queue_explain_timeout: Interval = Field(
        default=timedelta(seconds=1),
        description="How long `GET /api/tasks/{id}` waits for the scheduler to say why a "
        "queued task is not taken.",
    )
    queue_dependency_sweep: Interval = Field(
        default=timedelta(seconds=10),
        description=(
            "How often the dependency sweep releases waiting tasks whose dependencies all "
            "completed, and corrects their blocked reasons, when an event missed it."
        ),
    )
    queue_max_deliveries: int = Field(
        default=20,
        ge=1,
        description="Times a task may be handed to an agent (claimed) in all, failures and "
        "hand-backs without an outcome alike (missed acceptance, hello reconcile, stranded "
        "sweep); past it the task is dead-lettered, so one that crashes sidecars before they "
        "journal it cannot bounce forever. A retry by hand starts a fresh count.",
    )
