"""Scheduler settings: the common ones plus its own, prefixed `AGENTCOM_SCHEDULER_`."""

from datetime import timedelta

from pydantic import Field

from agentcom_common.settings import CommonSettings, Interval


class SchedulerSettings(CommonSettings):
    scheduler_heartbeat_interval: Interval = Field(
        default=timedelta(seconds=5), description="How often sidecars send a heartbeat."
    )
    scheduler_missed_heartbeats: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Heartbeats missed in a row before an agent is offline.",
    )
    scheduler_accept_timeout: Interval = Field(
        default=timedelta(seconds=30),
        description="An assignment not accepted within this time goes back to the queue.",
    )
    scheduler_execution_timeout: Interval = Field(
        default=timedelta(minutes=30),
        description="Deadline of an assignment unless the task's `complete_by` says otherwise; "
        "past it the sidecar gets a cancel and the task is retried.",
    )
    scheduler_sweep_interval: Interval = Field(
        default=timedelta(seconds=1), description="How often the presence sweep runs."
    )
