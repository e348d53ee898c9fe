"""Queue settings: the common ones plus the queue's own, prefixed `AGENTCOM_QUEUE_`."""

from datetime import timedelta

from pydantic import Field

from agentcom_common.settings import CommonSettings, Interval


class QueueSettings(CommonSettings):
    queue_retry_backoff: Interval = Field(
        default=timedelta(seconds=5),
        description="Delay before a failed task is offered again; doubles with each retry.",
    )
    queue_explain_timeout: Interval = Field(
        default=timedelta(seconds=1),
        description="How long `GET /api/tasks/{id}` waits for the scheduler to say why a "
        "queued task is not taken.",
    )
