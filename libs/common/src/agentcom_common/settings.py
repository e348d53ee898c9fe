"""Settings shared by every AgentCom process.

All come from the environment with the prefix `AGENTCOM_` (or a `.env` file). Every interval and
threshold is a setting so tests run the real timers at millisecond scale instead of mocking time.
Nothing here is built at import: `__main__` builds the settings and passes them down.
"""

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import AliasChoices, BeforeValidator, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentcom_common import ports
from agentcom_common.ports import SERVICE_NAMES as SERVICE_NAMES

ServiceName = Literal["dashboard", "queue", "scheduler", "llm-registry", "hubfsm"]

_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h|d)?\s*")


def _duration(value: object) -> object:
    """Accept `0.05`, `"250ms"`, `"5s"`, `"10m"`, `"2h"`; pass anything else to pydantic."""
    if isinstance(value, str) and (match := _DURATION.fullmatch(value)):
        return timedelta(seconds=float(match[1]) * _UNITS[match[2] or "s"])
    return value


Interval = Annotated[timedelta, BeforeValidator(_duration)]
"""A duration setting: a number of seconds, or a number with ms/s/m/h/d."""


class CommonSettings(BaseSettings):
    """What every process needs: where NATS and Postgres are, ports, logging and telemetry."""

    model_config = SettingsConfigDict(
        env_prefix="AGENTCOM_", env_file=".env", extra="ignore", frozen=True
    )

    home: Path = Field(
        default=Path(".agentcom"),
        description="Directory for local state: embedded server data, the admin token, logs.",
    )
    nats_url: str | None = Field(
        default=None,
        description="NATS server URL, or a cluster's node URLs comma-separated (credentials in "
        "one apply to all). Unset under `agentcom up`, which starts an embedded one.",
    )
    database_url: SecretStr | None = Field(
        default=None,
        description="Postgres URL (postgresql://…). Unset under `agentcom up`, which starts an "
        "embedded server.",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description="Seed this admin token at start (compose, Kubernetes); `agentcom up` "
        "creates one under the home directory instead.",
    )
    http_host: str = Field(default="127.0.0.1", description="Address the HTTP services bind to.")
    public_host: str = Field(default="127.0.0.1", description="Host name printed in service URLs.")
    port_offset: int = Field(
        default=0,
        ge=0,
        le=ports.MAX_PORT_OFFSET,
        description="Added to every default port so two stacks can share a host.",
    )
    http_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="This process's HTTP port; unset: its service's default port plus "
        "`port_offset` (`agentcom up --replicas` sets it for the second replica on).",
    )
    nats_stream_replicas: int = Field(
        default=1,
        ge=1,
        le=5,
        description="JetStream replicas of the EVENTS, INBOX and REPORTS streams: 3 on a 3-node "
        "NATS cluster (each stream survives the loss of one node); 1 on a single server.",
    )
    nats_port: int = Field(default=4222, ge=1, le=65535, description="Embedded NATS client port.")
    nats_monitor_port: int = Field(
        default=8222, ge=1, le=65535, description="Embedded NATS monitoring port."
    )
    postgres_port: int = Field(
        default=5432, ge=1, le=65535, description="Embedded Postgres port (names its unix socket)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Lowest level written to the JSON log."
    )
    otel_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT", "AGENTCOM_OTEL_ENDPOINT"),
        description="OTLP/HTTP collector; tracing and metrics export stay off while unset.",
    )
    metrics_sample_interval: Interval = Field(
        default=timedelta(seconds=15),
        description="How often gauges read from the database (queue depth, agents by state, outbox "
        "backlog) are refreshed for `/metrics` and OTLP.",
    )
    nats_reconnect_wait: Interval = Field(
        default=timedelta(seconds=1), description="Pause between NATS reconnect attempts."
    )
    nats_connect_timeout: Interval = Field(
        default=timedelta(seconds=5), description="How long one NATS connect attempt may take."
    )
    events_max_age: Interval = Field(
        default=timedelta(days=7), description="How long the EVENTS stream keeps a message."
    )
    dedup_window: Interval = Field(
        default=timedelta(minutes=10),
        description="JetStream duplicate window: a relay retry inside it is dropped by Nats-Msg-Id.",
    )
    outbox_interval: Interval = Field(
        default=timedelta(seconds=1),
        description="Outbox relay sweep period; commits also wake the relay at once.",
    )
    outbox_batch: int = Field(
        default=100, ge=1, le=10000, description="Outbox rows relayed per pass."
    )
    outbox_linger: Interval = Field(
        default=timedelta(milliseconds=5),
        description="Least time between two outbox relay passes while commits keep coming (a wake-up "
        "after a quiet spell is relayed at once).",
    )
    consumer_max_deliver: int = Field(
        default=50,
        ge=1,
        description="Deliveries of a JetStream message whose handler keeps failing for a "
        "passing reason (Postgres away) before it is refused and recorded; a message that can "
        "never be processed is refused at its first delivery.",
    )
    consumer_retry_first: Interval = Field(
        default=timedelta(seconds=1),
        description="Redelivery delay after the first passing failure; it doubles each time.",
    )
    consumer_retry_max: Interval = Field(
        default=timedelta(seconds=60),
        description="Longest redelivery delay of a message whose handler keeps failing.",
    )
    db_pool_size: int = Field(
        default=10,
        ge=1,
        le=100,
        description="Postgres connections a service keeps open (up to 10 more are opened, "
        "and closed again, under bursts).",
    )
    auth_cache_ttl: Interval = Field(
        default=timedelta(seconds=2),
        le=timedelta(seconds=60),
        description="How long a verified token is trusted before the database is asked again "
        "(at most 60 s): the latest a revocation takes effect even when its event is lost.",
    )
    ready_timeout: Interval = Field(
        default=timedelta(seconds=2),
        description="Deadline for each dependency check behind /readyz.",
    )
    shutdown_grace: Interval = Field(
        default=timedelta(seconds=5),
        description="How long a service may take to stop before it is killed.",
    )

    backup_interval: Interval = Field(
        default=timedelta(hours=6),
        description="How often `agentcom up` dumps every AgentCom schema to <home>/backups/ "
        "(`0` turns scheduled backups off); `agentcom status` and the dashboard's backup_stale "
        "alert call a backup older than twice this stale.",
    )
    backup_keep: int = Field(
        default=3, ge=1, le=1000, description="Backups kept in <home>/backups/ (newest first)."
    )

    http_max_body: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="Largest HTTP request body in bytes; a larger one is answered 413 "
        "`body_too_large` before it is read.",
    )
    json_max_depth: int = Field(
        default=32,
        ge=2,
        le=100,
        description="Deepest nesting of objects and lists a JSON request (HTTP or NATS) may "
        "have; deeper is 422 `too_deep`.",
    )

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("postgresql", "postgres")
        ):
            raise ValueError("must be a postgresql:// URL")
        return value

    def port(self, service: str) -> int:
        """The HTTP port of `service` after the offset."""
        return ports.BASE_PORTS[service] + self.port_offset

    def service_url(self, service: str) -> str:
        return ports.service_url(self.public_host, service, self.port_offset)

    @property
    def nats_client_port(self) -> int:
        return self.nats_port + self.port_offset

    @property
    def nats_http_port(self) -> int:
        return self.nats_monitor_port + self.port_offset

    @property
    def postgres_socket_port(self) -> int:
        return self.postgres_port + self.port_offset

    @property
    def admin_token_path(self) -> Path:
        return self.home / "admin.token"
