"""Dashboard settings: the common ones plus the dashboard's own, prefixed `AGENTCOM_DASHBOARD_`.

Alert thresholds are their own settings class (`AlertThresholds`, prefix
`AGENTCOM_DASHBOARD_ALERT_`): read from the environment and from `dashboard_alerts_file`,
which the alert loop re-reads whenever it changes, so a threshold changes without a restart.
"""

import ipaddress
from datetime import timedelta
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentcom_common.settings import CommonSettings, Interval


class DashboardSettings(CommonSettings):
    dashboard_queue_url: str | None = Field(
        default=None, description="Queue service base URL; unset: this host's queue port."
    )
    dashboard_scheduler_url: str | None = Field(
        default=None, description="Scheduler base URL; unset: this host's scheduler port."
    )
    dashboard_llm_url: str | None = Field(
        default=None, description="LLM registry base URL; unset: this host's llm-registry port."
    )
    dashboard_hub_url: str | None = Field(
        default=None, description="Hub FSM service base URL; unset: this host's hubfsm port."
    )
    dashboard_read_token: SecretStr | None = Field(
        default=None,
        description="Viewer token the dashboard reads the other services with; unset: one is "
        "created on first start and kept in `<home>/dashboard-read.token`.",
    )
    dashboard_login_to_view: bool | None = Field(
        default=None,
        description="Require a login (viewer or admin token) to see the page, its snapshot and "
        "its live socket; actions always need an admin login. Unset: required unless "
        "`AGENTCOM_HTTP_HOST` is a loopback address (the page shows command output).",
    )
    dashboard_session_ttl: Interval = Field(
        default=timedelta(hours=12), description="How long a login session lasts."
    )
    dashboard_secure_cookies: bool = Field(
        default=False, description="Mark the session cookie Secure (set when served over HTTPS)."
    )
    dashboard_source_timeout: Interval = Field(
        default=timedelta(seconds=2),
        description="Deadline for each call to another service; past it the panel shows "
        "'not available'.",
    )
    dashboard_snapshot_interval: Interval = Field(
        default=timedelta(seconds=10),
        description="How often a metrics snapshot is taken and the alert rules are checked.",
    )
    dashboard_metrics_window: Interval = Field(
        default=timedelta(hours=1),
        description="How much snapshot history and event history the charts and rules see.",
    )
    dashboard_alerts_file: Path | None = Field(
        default=None,
        description="Env-style file of `AGENTCOM_DASHBOARD_ALERT_*` thresholds, re-read when it "
        "changes; unset: `<home>/dashboard-alerts.env`.",
    )
    dashboard_push_subject: str = Field(
        default="mailto:admin@localhost",
        description="VAPID `sub` claim: a mailto: or https: contact for push services.",
    )
    dashboard_push_allow_http: bool = Field(
        default=False,
        description="Accept push endpoints over plain http (tests, a local push service); real "
        "push services are https, and this keeps the server from posting to arbitrary URLs.",
    )
    dashboard_push_ttl: Interval = Field(
        default=timedelta(hours=12),
        description="How long a push service keeps an undelivered push.",
    )
    dashboard_leader_interval: Interval = Field(
        default=timedelta(seconds=1),
        description="How often each replica tries for the alerts' leader lock and the leader "
        "checks it still holds it; only the leader judges the alert rules and sends pushes, "
        "and a replica takes over about four of these after the leader's process dies.",
    )

    @property
    def login_to_view(self) -> bool:
        """`dashboard_login_to_view`, or, unset, whether anyone off this host can reach us."""
        if self.dashboard_login_to_view is not None:
            return self.dashboard_login_to_view
        return not is_loopback(self.http_host)

    def url_of(self, service: str) -> str:
        explicit = {
            "queue": self.dashboard_queue_url,
            "scheduler": self.dashboard_scheduler_url,
            "llm-registry": self.dashboard_llm_url,
            "hubfsm": self.dashboard_hub_url,
        }[service]
        return (explicit or f"http://127.0.0.1:{self.port(service)}").rstrip("/")

    @property
    def alerts_file(self) -> Path:
        return self.dashboard_alerts_file or self.home / "dashboard-alerts.env"


class AlertThresholds(BaseSettings):
    """Thresholds of the alert rules; reloaded from the alerts file without a restart."""

    model_config = SettingsConfigDict(
        env_prefix="AGENTCOM_DASHBOARD_ALERT_", extra="ignore", frozen=True
    )

    queue_growing_checks: int = Field(
        default=3,
        ge=1,
        le=1000,
        description="Rises in a row of the queue depth that alert; it clears after as many "
        "snapshots without a rise.",
    )
    queue_growing_cooldown: Interval = Field(
        default=timedelta(minutes=5), description="Quiet time after a queue_growing alert."
    )
    failure_rate_pct: float = Field(
        default=50.0,
        ge=0,
        le=100,
        description="Alert above this share (%) of failed among finished attempts in the window.",
    )
    failure_rate_min_tasks: int = Field(
        default=1, ge=1, description="Finished attempts in the window before the rate is judged."
    )
    failure_rate_cooldown: Interval = Field(
        default=timedelta(minutes=10), description="Quiet time after a high_failure_rate alert."
    )
    stuck_after: Interval = Field(
        default=timedelta(minutes=5),
        description="An assigned or working task with no change for this long is stuck.",
    )
    stuck_critical_count: int = Field(
        default=3, ge=1, description="Stuck tasks from which stuck_tasks is CRITICAL, not WARNING."
    )
    stuck_cooldown: Interval = Field(
        default=timedelta(minutes=5),
        description="Quiet time after a WARNING stuck_tasks alert (a CRITICAL one ignores it).",
    )
    error_count: int = Field(
        default=10,
        ge=0,
        description="Failed attempts in the window above which high_error_rate fires.",
    )
    error_rate_cooldown: Interval = Field(
        default=timedelta(minutes=5), description="Quiet time after a high_error_rate alert."
    )
    backup_stale_after: Interval | None = Field(
        default=None,
        description="backup_stale fires when no backup succeeded for this long (`0` turns the "
        "rule off); unset: twice `AGENTCOM_BACKUP_INTERVAL` (12 h at its default), and off "
        "when that is `0`.",
    )

    def with_backup_interval(self, interval: timedelta) -> "AlertThresholds":
        """These thresholds with `backup_stale_after` filled in from the backup schedule when it
        was left unset, and None (the rule off) when it or the schedule is `0`."""
        stale = self.backup_stale_after
        if stale is None:
            stale = 2 * interval
        return self.model_copy(
            update={"backup_stale_after": stale if stale > timedelta(0) else None}
        )


def load_thresholds(path: Path) -> AlertThresholds:
    """Environment first, then the file (`AGENTCOM_DASHBOARD_ALERT_X=value` lines)."""
    if path.is_file():
        return AlertThresholds(_env_file=path)  # pyright: ignore[reportCallIssue]  # pydantic-settings init kwarg
    return AlertThresholds()


def is_loopback(host: str) -> bool:
    """Whether binding to `host` keeps every other machine out (`0.0.0.0`, a LAN address or a
    name other than `localhost` does not)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
