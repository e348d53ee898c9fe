"""Alert rules and their lifecycle.

A rule reads the snapshot history and says: the condition holds (with a message), it does not,
or it cannot tell (a source is down; the alert then stays as it is). The lifecycle per rule:

    inactive ──condition──▶ active ──acknowledge──▶ active (acknowledged)
        ▲                      │                           │
        └────── cleared ◀──────┴───── condition false ◀────┘

The same lifecycle as data is `LIFECYCLE` (a move for every state and signal; `None` is a
refusal), which `AlertBook` applies. A WARNING rule that fired less than its cooldown ago does
not fire again (no flapping); a CRITICAL rule fires whenever its condition becomes true,
cooldown or not.
"""

import itertools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from agentcom_common.contracts.alert import AlertAcknowledged, AlertCleared, AlertFired, Severity
from agentcom_common.errors import NotFoundError
from agentcom_dashboard.metrics import Snapshot
from agentcom_dashboard.settings import AlertThresholds


@dataclass(frozen=True, slots=True)
class Condition:
    holds: bool
    message: str = ""
    details: dict[str, Any] | None = None
    severity: Severity | None = None  # overrides the rule's own (stuck_tasks escalates)


Rule = Callable[[Sequence[Snapshot], AlertThresholds], Condition | None]


def queue_growing(history: Sequence[Snapshot], th: AlertThresholds) -> Condition | None:
    """Holds when the depth's last `n` changes were all rises; false once it stops rising.

    Repeated equal samples are one level, so growth is seen whatever the snapshot rate; the
    alert clears when the depth fell or did not rise for `n` snapshots.
    """
    depths = [s.queue_depth for s in history if s.queue_depth is not None]
    n = th.queue_growing_checks
    if len(depths) < 2:
        return None
    if not any(b > a for a, b in itertools.pairwise(depths[-(n + 1) :])):
        return Condition(False)
    levels = [d for i, d in enumerate(depths) if i == 0 or d != depths[i - 1]]
    if levels[-1] < levels[-2]:
        return Condition(False)
    recent = levels[-(n + 1) :]
    if len(recent) == n + 1 and all(b > a for a, b in itertools.pairwise(recent)):
        return Condition(
            True, f"queue grew {n} times in a row, now {recent[-1]}", {"depths": recent}
        )
    return None


def high_failure_rate(history: Sequence[Snapshot], th: AlertThresholds) -> Condition | None:
    last = history[-1]
    if last.finished < th.failure_rate_min_tasks or last.failure_rate_pct is None:
        return Condition(False)
    if last.failure_rate_pct > th.failure_rate_pct:
        return Condition(
            True,
            f"{last.failure_rate_pct}% of {last.finished} finished tasks failed in the window",
            {"failed": last.failed, "finished": last.finished},
        )
    return Condition(False)


def stuck_tasks(history: Sequence[Snapshot], th: AlertThresholds) -> Condition | None:
    """WARNING for a few stuck tasks, CRITICAL from `stuck_critical_count` on."""
    stuck = history[-1].stuck_tasks
    if stuck is None:
        return None
    if not stuck:
        return Condition(False)
    minutes = th.stuck_after.total_seconds() / 60
    critical = len(stuck) >= th.stuck_critical_count
    return Condition(
        True,
        f"{len(stuck)} task(s) assigned or working with no change for {minutes:g} min",
        {"task_ids": stuck[:50]},
        Severity.CRITICAL if critical else Severity.WARNING,
    )


def no_agents_online(history: Sequence[Snapshot], _th: AlertThresholds) -> Condition | None:
    last = history[-1]
    if last.agents_total is None or last.agents_online is None:
        return None
    if last.agents_total > 0 and last.agents_online == 0:
        return Condition(True, f"none of {last.agents_total} registered agents is online")
    return Condition(False)


def high_error_rate(history: Sequence[Snapshot], th: AlertThresholds) -> Condition | None:
    last = history[-1]
    if last.failed > th.error_count:
        return Condition(
            True, f"{last.failed} task failures in the window (limit {th.error_count})"
        )
    return Condition(False)


def risky_change(history: Sequence[Snapshot], _th: AlertThresholds) -> Condition | None:
    """Holds while a change of risk tier 3 (opened as a draft pull request) is in the window."""
    risky = history[-1].risky_tasks
    if not risky:
        return Condition(False)
    return Condition(
        True,
        f"{len(risky)} change(s) of risk tier 3 delivered as draft pull requests: a person "
        "decides on each",
        {"task_ids": risky[-50:]},
    )


def _ago(since: timedelta) -> str:
    return str(since).split(".")[0]


def backup_failed(history: Sequence[Snapshot], _th: AlertThresholds) -> Condition | None:
    """Holds while the newest backup attempt recorded in `ops.backups` failed."""
    last = history[-1]
    if last.backups is None:
        return None
    attempt = last.backups.recorded.last
    if attempt is None or attempt.ok:
        return Condition(False)
    return Condition(
        True,
        f"the last backup failed {_ago(last.at - attempt.finished_at)} ago on {attempt.host}: "
        f"{attempt.error}"[:1000],
        {"finished_at": attempt.finished_at.isoformat(), "host": attempt.host},
    )


def backup_stale(history: Sequence[Snapshot], th: AlertThresholds) -> Condition | None:
    """Holds when no backup succeeded within `backup_stale_after`; with none at all, once this
    dashboard has watched that long (a fresh deployment is not stale at its first snapshot)."""
    last = history[-1]
    limit = th.backup_stale_after
    if last.backups is None:
        return None
    if limit is None:  # the rule is off (`0`, or no schedule and no threshold)
        return Condition(False)
    good = last.backups.recorded.last_ok
    if good is None:
        watched = last.at - last.backups.watched_since
        if watched <= limit:
            return Condition(False)
        return Condition(True, f"no backup has succeeded in the {_ago(watched)} watched")
    age = last.at - good.finished_at
    if age <= limit:
        return Condition(False)
    return Condition(
        True,
        f"the newest backup is {_ago(age)} old (limit {_ago(limit)}): {good.file} on {good.host}",
        {"finished_at": good.finished_at.isoformat(), "file": good.file, "host": good.host},
    )


@dataclass(frozen=True, slots=True)
class RuleSpec:
    severity: Severity
    check: Rule
    cooldown: Callable[[AlertThresholds], timedelta]
    # the docs page and anchor of what to do (docs/runbooks.md); a test checks it exists
    runbook: str = ""


RULES: Final[dict[str, RuleSpec]] = {
    "queue_growing": RuleSpec(
        Severity.WARNING,
        queue_growing,
        lambda th: th.queue_growing_cooldown,
        "runbooks.md#queue_growing",
    ),
    "high_failure_rate": RuleSpec(
        Severity.WARNING,
        high_failure_rate,
        lambda th: th.failure_rate_cooldown,
        "runbooks.md#high_failure_rate",
    ),
    "stuck_tasks": RuleSpec(
        Severity.WARNING, stuck_tasks, lambda th: th.stuck_cooldown, "runbooks.md#stuck_tasks"
    ),
    "no_agents_online": RuleSpec(
        Severity.CRITICAL,
        no_agents_online,
        lambda _th: timedelta(0),
        "runbooks.md#no_agents_online",
    ),
    "high_error_rate": RuleSpec(
        Severity.WARNING,
        high_error_rate,
        lambda th: th.error_rate_cooldown,
        "runbooks.md#high_error_rate",
    ),
    # no cooldown: each new risky change is in the details while the alert stays active
    "risky_change": RuleSpec(
        Severity.WARNING, risky_change, lambda _th: timedelta(0), "runbooks.md#risky_change"
    ),
    # no cooldown: each changes only with a new backup attempt (hours apart)
    "backup_failed": RuleSpec(
        Severity.WARNING, backup_failed, lambda _th: timedelta(0), "runbooks.md#backup_failed"
    ),
    "backup_stale": RuleSpec(
        Severity.WARNING, backup_stale, lambda _th: timedelta(0), "runbooks.md#backup_stale"
    ),
}


@dataclass(frozen=True, slots=True)
class Alert:
    fired: AlertFired
    acknowledged_by: str | None = None

    def as_json(self) -> dict[str, Any]:
        return self.fired.model_dump(mode="json") | {
            "acknowledged": self.acknowledged_by is not None,
            "acknowledged_by": self.acknowledged_by,
            "runbook": f"docs/{RULES[spec].runbook}"
            if (spec := self.fired.rule_id) in RULES
            else None,
        }


Change = AlertFired | AlertCleared | AlertAcknowledged
AlertState = Literal["inactive", "active", "acknowledged"]
Signal = Literal["holds", "ends", "acknowledge"]

LIFECYCLE: Final[Mapping[tuple[AlertState, Signal], AlertState | None]] = {
    ("inactive", "holds"): "active",  # fires, unless a warning is cooling down
    ("inactive", "ends"): "inactive",
    ("inactive", "acknowledge"): None,  # refused: 404 alert_not_found
    ("active", "holds"): "active",
    ("active", "ends"): "inactive",  # cleared
    ("active", "acknowledge"): "acknowledged",
    ("acknowledged", "holds"): "acknowledged",
    ("acknowledged", "ends"): "inactive",  # cleared
    ("acknowledged", "acknowledge"): "acknowledged",  # idempotent
}


class AlertBook:
    """The active alerts and when each rule last fired (for cooldowns)."""

    def __init__(self) -> None:
        self.active: dict[str, Alert] = {}
        self.last_fired: dict[str, datetime] = {}

    def state(self, rule_id: str) -> AlertState:
        alert = self.active.get(rule_id)
        if alert is None:
            return "inactive"
        return "active" if alert.acknowledged_by is None else "acknowledged"

    def evaluate(
        self, history: Sequence[Snapshot], th: AlertThresholds, now: datetime
    ) -> list[Change]:
        if not history:
            return []
        changes: list[Change] = []
        for rule_id, spec in RULES.items():
            condition = spec.check(history, th)
            if condition is None:
                continue
            state = self.state(rule_id)
            target = LIFECYCLE[(state, "holds" if condition.holds else "ends")]
            if state == "inactive" and target == "active":
                severity = condition.severity or spec.severity
                last = self.last_fired.get(rule_id)
                cooling = last is not None and now - last < spec.cooldown(th)
                if cooling and severity is not Severity.CRITICAL:
                    continue
                fired = AlertFired(
                    rule_id=rule_id,
                    severity=severity,
                    message=condition.message,
                    details=condition.details or {},
                    fired_at=now,
                )
                self.active[rule_id] = Alert(fired)
                self.last_fired[rule_id] = now
                changes.append(fired)
            elif state != "inactive" and target == "inactive":
                del self.active[rule_id]
                changes.append(AlertCleared(rule_id=rule_id, cleared_at=now))
        return changes

    def acknowledge(self, rule_id: str, by: str, now: datetime) -> AlertAcknowledged:
        """Mark the active alert seen. Idempotent. Errors: 404 `alert_not_found`."""
        alert = self.active.get(rule_id)
        if alert is None or LIFECYCLE[(self.state(rule_id), "acknowledge")] is None:
            raise NotFoundError(f"no active alert for rule {rule_id!r}", code="alert_not_found")
        self.active[rule_id] = replace(alert, acknowledged_by=alert.acknowledged_by or by)
        return AlertAcknowledged(rule_id=rule_id, by=by, at=now)

    async def apply(
        self,
        decide: Callable[[], list[Change]],
        publish: Callable[[list[Change]], Awaitable[None]],
    ) -> None:
        """Make the changes `decide` returns and hand them to `publish` (row + outbox event).

        If `publish` raises (Postgres down), the book is put back as it was, so the next
        evaluation makes the same changes again: a fired or cleared event is never lost and
        an acknowledgement that was refused is not shown as done.
        """
        before = dict(self.active), dict(self.last_fired)
        changes = decide()
        try:
            await publish(changes)
        except BaseException:
            self.active, self.last_fired = before
            raise

    def listing(self) -> list[dict[str, Any]]:
        return [alert.as_json() for alert in self.active.values()]
