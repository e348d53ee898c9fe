"""What the dashboard learns from the event stream itself: finished tasks and their timings in the
window, the tool-call stream, the hub's state and goals (panels whose services may not exist yet).

Fed by the service's own ordered consumer, which starts at `now - window` so a restart rebuilds
the counters from the stream. Everything here is bounded.
"""

import itertools
import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from agentcom_dashboard.events import Event

# an attempt ends completed, partial_pass or failed; a dead-lettered task's last attempt already
# counted as failed, so `dead_lettered` (which follows it) is not counted again
FINISHED = frozenset({"completed", "partial_pass", "failed"})
FAILED = frozenset({"failed"})
STREAMED = frozenset({"progress", "tool_call"})
MAX_OPEN = 10_000
# Goals seen in the stream, most recently changed last. The hub owns the full list (GET
# /api/goals); this mirror only feeds the live goals panel, and every browser's first snapshot
# carries all of it, so without a bound a long-running hub made each snapshot grow forever.
# 200 matches the tool-call and hub-state memories: more than a screen of goals.
MAX_GOALS = 200


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(pct / 100 * len(ordered))))
    return ordered[rank - 1]


def _when(event: Event) -> datetime:
    raw = event.data.get("at")
    if isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            return event.at
        if parsed.tzinfo is not None:
            return parsed
    return event.at


@dataclass
class Tracker:
    window: timedelta
    finished: deque[tuple[datetime, str]] = field(default_factory=deque[tuple[datetime, str]])
    risky: deque[tuple[datetime, str]] = field(default_factory=deque[tuple[datetime, str]])
    """Tier-3 changes delivered in the window (when, task id): the risky_change alert."""
    wait_ms: deque[tuple[datetime, float]] = field(default_factory=deque[tuple[datetime, float]])
    run_ms: deque[tuple[datetime, float]] = field(default_factory=deque[tuple[datetime, float]])
    tool_calls: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=200))
    hub_states: deque[tuple[str, datetime]] = field(default_factory=lambda: deque(maxlen=200))
    hub: dict[str, Any] = field(default_factory=dict[str, Any])
    goals: dict[str, dict[str, Any]] = field(default_factory=dict[str, dict[str, Any]])
    events_seen: dict[str, int] = field(default_factory=dict[str, int])
    last_seq: int = 0
    _submitted: dict[str, datetime] = field(default_factory=dict[str, datetime])
    _assigned: dict[str, datetime] = field(default_factory=dict[str, datetime])

    def on_event(self, event: Event) -> None:
        if event.seq <= self.last_seq:
            return  # a redelivery after the consumer was recreated
        self.last_seq = event.seq
        self.events_seen[event.area] = self.events_seen.get(event.area, 0) + 1
        if event.area == "task":
            self._on_task(event)
        elif event.area == "hub":
            self._on_hub(event)
        elif event.area == "goal":
            goal_id = str(event.data.get("goal_id") or event.data.get("id") or "")
            if goal_id:
                self._remember_goal(goal_id, event.data | {"event": event.name})

    def _on_task(self, event: Event) -> None:
        task_id = str(event.data.get("task_id", ""))
        at = _when(event)
        if event.name in STREAMED:
            self.tool_calls.append(event.as_json())
        elif event.name == "submitted":
            self._remember(self._submitted, task_id, at)
        elif event.name == "assigned":
            if (since := self._submitted.pop(task_id, None)) is not None:
                self.wait_ms.append((at, (at - since).total_seconds() * 1000))
            self._remember(self._assigned, task_id, at)
        elif event.name in ("requeued", "retried", "released"):
            self._remember(self._submitted, task_id, at)
            self._assigned.pop(task_id, None)
        if event.name in FINISHED:
            self.finished.append((at, event.name))
            if event.data.get("risk_tier") == 3:
                self.risky.append((at, task_id))
            if (since := self._assigned.pop(task_id, None)) is not None:
                self.run_ms.append((at, (at - since).total_seconds() * 1000))
        elif event.name == "cancelled":
            self._submitted.pop(task_id, None)
            self._assigned.pop(task_id, None)

    def _on_hub(self, event: Event) -> None:
        self.hub = event.data | {"event": event.name, "at": _when(event).isoformat()}
        state = event.data.get("state") or event.data.get("to_state")
        if isinstance(state, str):
            self.hub_states.append((state, _when(event)))

    def _remember_goal(self, goal_id: str, goal: dict[str, Any]) -> None:
        self.goals.pop(goal_id, None)  # re-insert: dict order is the order of last change
        self.goals[goal_id] = goal
        while len(self.goals) > MAX_GOALS:  # forget the goal that changed longest ago
            self.goals.pop(next(iter(self.goals)))

    @staticmethod
    def _remember(book: dict[str, datetime], task_id: str, at: datetime) -> None:
        if len(book) >= MAX_OPEN:  # a task we never see finish must not grow this forever
            book.pop(next(iter(book)))
        book[task_id] = at

    def prune(self, now: datetime) -> None:
        start = now - self.window
        for series in (self.finished, self.risky, self.wait_ms, self.run_ms):
            while series and series[0][0] < start:
                series.popleft()

    def counts(self) -> tuple[int, int]:
        """(finished, failed) attempts in the window."""
        failed = sum(1 for _, name in self.finished if name in FAILED)
        return len(self.finished), failed

    def risky_tasks(self) -> list[str]:
        """Tasks whose delivered change was risk tier 3, in the window, oldest first."""
        return [task_id for _, task_id in self.risky]

    def completed_since(self, since: datetime) -> int:
        return sum(1 for at, name in self.finished if at >= since and name not in FAILED)

    def latencies(self) -> dict[str, float | None]:
        waits = [ms for _, ms in self.wait_ms]
        runs = [ms for _, ms in self.run_ms]
        return {
            f"{kind}_p{pct}": percentile(values, pct)
            for kind, values in (("wait", waits), ("run", runs))
            for pct in (50, 90, 99)
        }

    def hub_time_in_state(self, now: datetime) -> dict[str, float]:
        """Seconds spent in each hub state over the remembered changes."""
        spent: dict[str, float] = {}
        marks = [*self.hub_states, ("", now)]  # the current state lasts until now
        for (state, entered), (_, left) in itertools.pairwise(marks):
            spent[state] = spent.get(state, 0.0) + (left - entered).total_seconds()
        return spent
