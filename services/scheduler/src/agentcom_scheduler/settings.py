"""Scheduler settings: the common ones plus its own, prefixed `AGENTCOM_SCHEDULER_`."""

from datetime import timedelta

from pydantic import Field, SecretStr

from agentcom_common.settings import CommonSettings, Interval


class SchedulerSettings(CommonSettings):
    scheduler_heartbeat_interval: Interval = Field(
        default=timedelta(seconds=5), description="How often sidecars send a heartbeat."
    )
    scheduler_missed_heartbeats: int = Field(
        default=3,
        # 2 at least: the offline decision comes 0.2 interval early (see presence.silence_for),
        # which with 1 would fall before a live agent's next heartbeat is due
        ge=2,
        le=100,
        description="Heartbeat intervals of silence within which an agent is taken offline and "
        "its task handed back (decided 0.2 interval earlier, after the last heartbeat).",
    )
    scheduler_accept_timeout: Interval = Field(
        default=timedelta(seconds=30),
        description="An assignment not accepted within this time goes back to the queue.",
    )
    scheduler_execution_timeout: Interval = Field(
        default=timedelta(minutes=30),
        description="Deadline of a whole assignment (every attempt) unless the task's "
        "`complete_by` says otherwise; sent with the assignment, which the sidecar stops at.",
    )
    scheduler_deadline_grace: Interval = Field(
        default=timedelta(seconds=30),
        description="How long past an assignment's deadline the scheduler waits for the "
        "sidecar's own report before it takes the task back (a retry counted) and sends a cancel.",
    )
    scheduler_sweep_interval: Interval = Field(
        default=timedelta(seconds=1), description="How often the presence sweep runs."
    )
    scheduler_working_offline_timeout: Interval = Field(
        default=timedelta(minutes=10),
        description="A task `working` longer than this on an agent that is offline is requeued.",
    )
    scheduler_nats_issuer_seed: SecretStr | None = Field(
        default=None,
        description="Account nkey seed (`SA…`) the scheduler signs agents' NATS logins with "
        "(auth callout); its public key is nats-server's `auth_callout.issuer`. Unset: the "
        "scheduler answers no NATS logins (agents cannot connect).",
    )
    scheduler_rate_light: int = Field(
        default=120, ge=1, description="Requests per minute an agent may make in the light tier."
    )
    scheduler_rate_normal: int = Field(
        default=60, ge=1, description="Requests per minute an agent may make in the normal tier."
    )
    scheduler_rate_heavy: int = Field(
        default=10, ge=1, description="Requests per minute an agent may make in the heavy tier."
    )
    scheduler_validation_window: Interval = Field(
        default=timedelta(minutes=1),
        description="Window in which repeated malformed reports from one agent are counted.",
    )
    scheduler_validation_limit: int = Field(
        default=10,
        ge=1,
        description="Malformed reports within the window before the agent is cut off for a while.",
    )
    scheduler_validation_cooldowns: tuple[Interval, ...] = Field(
        default=(timedelta(seconds=30), timedelta(seconds=60), timedelta(seconds=300)),
        min_length=1,  # limits.Limiter.violation indexes it
        description="How long the 1st, 2nd, 3rd and later cut-offs last (NATS logins refused, "
        "its connections closed, its reports dropped).",
    )
