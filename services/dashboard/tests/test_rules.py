"""The alert rules and their lifecycle as pure functions over snapshot histories."""

from datetime import UTC, datetime, timedelta

import pytest

from agentcom_common import backups, subjects
from agentcom_common.contracts.alert import AlertCleared, AlertFired, Severity
from agentcom_common.errors import NotFoundError
from agentcom_dashboard import alerts
from agentcom_dashboard.events import Event
from agentcom_dashboard.metrics import Backups, History, Snapshot
from agentcom_dashboard.settings import AlertThresholds
from agentcom_dashboard.tracker import MAX_GOALS, Tracker, percentile

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TH = AlertThresholds(queue_growing_checks=3)


def snap(n: int, depth: int | None = 0, **fields: object) -> Snapshot:
    base: dict[str, object] = {
        "at": T0 + timedelta(seconds=10 * n),
        "queue_depth": depth,
        "queued_by_lane": {},
        "by_state": {},
        "agents_total": 0,
        "agents_online": 0,
        "finished": 0,
        "failed": 0,
        "failure_rate_pct": None,
        "completed_per_interval": 0,
        "stuck_tasks": [],
    }
    return Snapshot(**(base | fields))  # type: ignore[arg-type]


def history(*depths: int | None) -> list[Snapshot]:
    return [snap(i, d) for i, d in enumerate(depths)]


@pytest.mark.parametrize(
    ("depths", "holds"),
    [
        ((0, 1, 2, 3), True),
        ((0, 0, 1, 1, 1, 2, 2, 3), True),  # equal samples are one level
        ((0, 1, 2), None),  # two rises: not yet, not false either
        ((0, 1, 2, 3, 3, 3, 3), False),  # no rise for 3 snapshots
        ((0, 1, 2, 3, 1), False),  # it fell
        ((0, 1, 0, 1, 2), None),
        ((None, None), None),
    ],
)
def test_queue_growing(depths: tuple[int | None, ...], holds: bool | None) -> None:
    condition = alerts.queue_growing(history(*depths), TH)
    assert (condition.holds if condition else None) is holds


def test_stuck_tasks_escalate_to_critical() -> None:
    th = AlertThresholds(stuck_critical_count=2)
    one = alerts.stuck_tasks([snap(0, stuck_tasks=["t1"])], th)
    two = alerts.stuck_tasks([snap(0, stuck_tasks=["t1", "t2"])], th)
    unknown = alerts.stuck_tasks([snap(0, stuck_tasks=None)], th)
    assert one is not None
    assert one.severity is Severity.WARNING
    assert two is not None
    assert two.severity is Severity.CRITICAL
    assert unknown is None


def test_book_cooldown_applies_to_warnings_only() -> None:
    book = alerts.AlertBook()
    th = AlertThresholds(error_count=0, error_rate_cooldown=timedelta(hours=1))
    failing = [snap(0, failed=1, finished=1, failure_rate_pct=100.0)]
    fine = [snap(0)]
    now = T0

    assert [type(c) for c in book.evaluate(failing, th, now)] == [AlertFired, AlertFired]
    cleared = book.evaluate(fine, th, now + timedelta(seconds=1))
    assert {c.rule_id for c in cleared if isinstance(c, AlertCleared)} == {
        "high_error_rate",
        "high_failure_rate",
    }
    again = book.evaluate(failing, th, now + timedelta(seconds=2))
    assert [c.rule_id for c in again] == []  # both are warnings inside their cooldowns

    offline = [snap(0, agents_total=2, agents_online=0)]
    fired = book.evaluate(offline, th, now)
    book.evaluate(fine, th, now)
    refired = book.evaluate(offline, th, now + timedelta(seconds=1))
    assert [c.rule_id for c in fired] == [c.rule_id for c in refired] == ["no_agents_online"]


async def test_book_is_put_back_when_publishing_fails() -> None:
    book = alerts.AlertBook()
    th = AlertThresholds(error_count=0, error_rate_cooldown=timedelta(hours=1))
    failing = [snap(0, failed=1, finished=1, failure_rate_pct=100.0)]
    published: list[alerts.Change] = []

    async def postgres_down(_changes: list[alerts.Change]) -> None:
        raise OSError("connection refused")

    async def postgres_up(changes: list[alerts.Change]) -> None:
        published.extend(changes)

    with pytest.raises(OSError, match="connection refused"):
        await book.apply(lambda: book.evaluate(failing, th, T0), postgres_down)
    assert book.active == {}
    assert book.last_fired == {}
    # the next snapshot fires (and publishes) them again, cooldown or not
    await book.apply(lambda: book.evaluate(failing, th, T0 + timedelta(seconds=1)), postgres_up)
    assert {c.rule_id for c in published} == {"high_error_rate", "high_failure_rate"}

    with pytest.raises(OSError, match="connection refused"):
        await book.apply(lambda: [book.acknowledge("high_error_rate", "me", T0)], postgres_down)
    assert book.active["high_error_rate"].acknowledged_by is None


def test_acknowledge_unknown_rule_is_not_found() -> None:
    with pytest.raises(NotFoundError):
        alerts.AlertBook().acknowledge("queue_growing", "me", T0)


def task_event(seq: int, name: str, task_id: str, second: int) -> Event:
    at = T0 + timedelta(seconds=second)
    return Event(seq, f"agentcom.evt.task.{name}", at, {"task_id": task_id, "at": at.isoformat()})


def test_tracker_counts_a_dead_letter_once_and_times_wait_and_run() -> None:
    tracker = Tracker(timedelta(hours=1))
    for seq, (name, second) in enumerate(
        [("submitted", 0), ("assigned", 2), ("accepted", 3), ("failed", 7), ("dead_lettered", 7)],
        start=1,
    ):
        tracker.on_event(task_event(seq, name, "t1", second))
    tracker.on_event(task_event(3, "failed", "t1", 9))  # a replay: ignored

    assert tracker.counts() == (1, 1)
    assert tracker.latencies()["wait_p50"] == 2000
    assert tracker.latencies()["run_p50"] == 5000


def test_percentile_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 99) == 5.0
    assert percentile([float(n) for n in range(1, 101)], 90) == 90.0


def goal_event(seq: int, goal_id: str, name: str = "goal_submitted") -> Event:
    return Event(seq, f"agentcom.evt.goal.{name}", T0, {"goal_id": goal_id})


def test_tracker_keeps_only_the_most_recently_changed_goals() -> None:
    tracker = Tracker(timedelta(hours=1))
    seq = 0
    for n in range(MAX_GOALS + 50):
        seq += 1
        tracker.on_event(goal_event(seq, f"g{n}"))
        if n == 10:  # g0 changes again early on...
            seq += 1
            tracker.on_event(goal_event(seq, "g0", "goal_complete"))
    seq += 1
    tracker.on_event(goal_event(seq, "g60", "goal_complete"))  # ...g60 just now

    assert len(tracker.goals) == MAX_GOALS
    assert "g0" not in tracker.goals  # its last change is older than the newest MAX_GOALS
    assert list(tracker.goals)[-1] == "g60"
    assert tracker.goals["g60"]["event"] == "goal_complete"
    assert f"g{MAX_GOALS + 49}" in tracker.goals
    assert "g49" not in tracker.goals
    assert "g50" in tracker.goals


def test_the_platforms_own_events_are_not_the_hubs() -> None:
    tracker = Tracker(timedelta(hours=1))
    started = {"service": "queue", "version": "1", "instance": "h:1", "started_at": T0.isoformat()}
    tracker.on_event(Event(1, subjects.SERVICE_STARTED, T0, started))
    tracker.on_event(Event(2, subjects.MESSAGE_REFUSED, T0, {"consumer": "c", "code": "x"}))

    assert tracker.hub == {}
    assert tracker.events_seen == {"system": 2}

    tracker.on_event(Event(3, subjects.HUB_STATE_CHANGED, T0, {"to_state": "executing"}))

    assert tracker.hub["to_state"] == "executing"


def test_utilization_is_busy_over_online_per_agent_and_fleet() -> None:
    window = History(timedelta(hours=1))
    for n, states in enumerate(
        [
            {"a": "working", "b": "idle", "c": "offline"},
            {"a": "assigned", "b": "offline", "c": "offline"},
            {"a": "idle", "b": "working", "c": "offline"},
            {"a": "offline", "b": "working", "c": "offline"},
        ]
    ):
        window.add(snap(n, agent_states=states))
    shares = window.utilization()
    # a: busy 2 of its 3 online snapshots; b: 2 of 3; c never online; fleet: 4 of 6
    assert shares == {"a": 2 / 3, "b": 2 / 3, "fleet": 4 / 6}
    assert window.snapshots[0].utilization == 0.5
    assert window.snapshots[0].as_json()["utilization"] == 0.5
    assert snap(9, agent_states={"a": "offline"}).utilization is None


def test_the_backup_rules_do_not_judge_an_unread_record_and_stale_can_be_turned_off() -> None:
    made = T0 - timedelta(days=3)
    old = backups.Attempt(made, made, True, "h:/home", file="/home/backups/a.dump", size=9)
    seen = Backups(backups.Summary(old, old), watched_since=T0 - timedelta(days=4))
    unread = [snap(0)]  # Postgres did not answer: `backups` is None
    stale = [snap(0, backups=seen)]
    schedule = TH.with_backup_interval(timedelta(hours=6))  # unset: twice the interval

    assert alerts.backup_stale(unread, schedule) is None
    assert alerts.backup_failed(unread, schedule) is None
    assert schedule.backup_stale_after == timedelta(hours=12)
    assert alerts.backup_stale(stale, schedule) == alerts.Condition(
        True,
        "the newest backup is 3 days, 0:00:00 old (limit 12:00:00): /home/backups/a.dump on h:/home",
        {"finished_at": made.isoformat(), "file": "/home/backups/a.dump", "host": "h:/home"},
    )
    for off in (
        TH.with_backup_interval(timedelta(0)),  # no schedule, no threshold
        AlertThresholds(backup_stale_after=timedelta(0)).with_backup_interval(timedelta(hours=6)),
    ):
        assert off.backup_stale_after is None
        assert alerts.backup_stale(stale, off) == alerts.Condition(False)
    assert alerts.backup_failed(stale, schedule) == alerts.Condition(False)
