"""Queue settings: the common ones plus the queue's own, prefixed `AGENTCOM_QUEUE_`."""

from datetime import timedelta

from pydantic import Field

from agentcom_common.settings import CommonSettings, Interval


class QueueSettings(CommonSettings):
    queue_retry_backoff: Interval = Field(
        default=timedelta(seconds=5),
        description="Delay before a failed task is offered again; doubles with each retry.",
    )
    queue_dependency_sweep: Interval = Field(
        default=timedelta(seconds=10),
        description=(
            "How often the dependency sweep releases waiting tasks whose dependencies all "
            "completed, and corrects their blocked reasons, when an event missed it."
        ),
    )
