"""The latest snapshot and counters in the Prometheus text exposition format (0.0.4)."""

from agentcom_dashboard.live import Live
from agentcom_dashboard.metrics import Snapshot


def _line(name: str, value: float | None, labels: dict[str, str] | None = None) -> str:
    if value is None:
        return ""
    label = ""
    if labels:
        inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
        label = "{" + inner + "}"
    return f"{name}{label} {value:g}\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(name: str, kind: str, doc: str, lines: list[str]) -> str:
    body = "".join(lines)
    return f"# HELP {name} {doc}\n# TYPE {name} {kind}\n{body}" if body else ""


def _backup_families(s: Snapshot) -> list[str]:
    """The backup record's newest good backup's age and whether the newest attempt was ok;
    absent while Postgres does not say, or before the first backup (an alert rule on the age,
    not on its absence, would never fire on a stack that never backed up: `backup_stale` does)."""
    recorded = s.backups.recorded if s.backups else None
    good = recorded.last_ok if recorded else None
    last = recorded.last if recorded else None
    return [
        _family(
            "agentcom_backup_age_seconds",
            "gauge",
            "Age of the newest good backup in ops.backups.",
            [
                _line(
                    "agentcom_backup_age_seconds",
                    None if good is None else round((s.at - good.finished_at).total_seconds(), 1),
                )
            ],
        ),
        _family(
            "agentcom_backup_last_ok",
            "gauge",
            "1 when the newest backup attempt in ops.backups succeeded, 0 when it failed.",
            [_line("agentcom_backup_last_ok", None if last is None else int(last.ok))],
        ),
    ]


def render(live: Live) -> str:
    s = live.history.latest
    out = [
        _family(
            "agentcom_events_seen_total",
            "counter",
            "Events read from the EVENTS stream, by area.",
            [
                _line("agentcom_events_seen_total", n, {"area": a})
                for a, n in live.tracker.events_seen.items()
            ],
        ),
        _family(
            "agentcom_alerts_active",
            "gauge",
            "Active alerts by rule and severity.",
            [
                _line(
                    "agentcom_alerts_active", 1, {"rule": a["rule_id"], "severity": a["severity"]}
                )
                for a in live.book.listing()
            ],
        ),
        _family(
            "agentcom_dashboard_websockets",
            "gauge",
            "Browsers connected.",
            [_line("agentcom_dashboard_websockets", live.sockets)],
        ),
        _family(
            "agentcom_push_sent_total",
            "counter",
            "Web pushes accepted by a push service.",
            [_line("agentcom_push_sent_total", live.pusher.sent)],
        ),
        _family(
            "agentcom_push_failed_total",
            "counter",
            "Web pushes that failed.",
            [_line("agentcom_push_failed_total", live.pusher.failed)],
        ),
    ]
    if s is not None:
        out += [
            _family(
                "agentcom_queue_depth",
                "gauge",
                "Queued tasks by lane.",
                [
                    _line("agentcom_queue_depth", n, {"lane": lane})
                    for lane, n in s.queued_by_lane.items()
                ],
            ),
            _family(
                "agentcom_tasks",
                "gauge",
                "Tasks by state.",
                [_line("agentcom_tasks", n, {"state": st}) for st, n in s.by_state.items()],
            ),
            _family(
                "agentcom_agents",
                "gauge",
                "Registered agents.",
                [_line("agentcom_agents", s.agents_total)],
            ),
            _family(
                "agentcom_agents_online",
                "gauge",
                "Agents not offline.",
                [_line("agentcom_agents_online", s.agents_online)],
            ),
            _family(
                "agentcom_dashboard_utilization_ratio",
                "gauge",
                'Busy over online share in the window, per agent and agent="fleet".',
                [
                    _line("agentcom_dashboard_utilization_ratio", share, {"agent": agent})
                    for agent, share in live.history.utilization().items()
                ],
            ),
            _family(
                "agentcom_tasks_failed_window",
                "gauge",
                "Failed or dead-lettered tasks in the window.",
                [_line("agentcom_tasks_failed_window", s.failed)],
            ),
            _family(
                "agentcom_tasks_finished_window",
                "gauge",
                "Finished tasks in the window.",
                [_line("agentcom_tasks_finished_window", s.finished)],
            ),
            *_backup_families(s),
            _family(
                "agentcom_task_latency_ms",
                "gauge",
                "Submit-to-assign (wait) and assign-to-finish (run) percentiles in the window.",
                [
                    _line(
                        "agentcom_task_latency_ms",
                        v,
                        {"kind": k.split("_")[0], "quantile": str(int(k.split("_p")[1]) / 100)},
                    )
                    for k, v in s.latency_ms.items()
                ],
            ),
        ]
    return "".join(out)
