"""Metrics snapshots: taken every `dashboard_snapshot_interval`, kept for `dashboard_metrics_window`.

A snapshot joins what the owning services say now (queue depth, agents, stuck tasks, read over
HTTP) with what the event stream says about the window (throughput, failures, latencies) and
the record of the backups in Postgres (`agentcom_common.backups`). A source that does not answer
leaves its fields None; the rules then do not judge them.
"""

import asyncio
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from agentcom_common import backups
from agentcom_dashboard.settings import AlertThresholds
from agentcom_dashboard.sources import Sources
from agentcom_dashboard.tracker import Tracker

ACTIVE = ("assigned", "working")
BUSY = frozenset(ACTIVE)  # an agent in these states holds a task


@dataclass(frozen=True, slots=True)
class Backups:
    """What `ops.backups` says at a snapshot, and since when this dashboard has watched (the
    age of "no good backup at all")."""

    recorded: backups.Summary
    watched_since: datetime

    def as_json(self, now: datetime) -> dict[str, Any]:
        return self.recorded.as_json(now) | {"watched_since": self.watched_since.isoformat()}


@dataclass(frozen=True, slots=True)
class Snapshot:
    at: datetime
    queue_depth: int | None
    queued_by_lane: dict[str, int]
    by_state: dict[str, int]
    agents_total: int | None
    agents_online: int | None
    finished: int
    failed: int
    failure_rate_pct: float | None
    completed_per_interval: int
    stuck_tasks: list[str] | None
    latency_ms: dict[str, float | None] = field(default_factory=dict[str, float | None])
    agent_states: dict[str, str] = field(default_factory=dict[str, str])
    """Each agent's state at the snapshot (id -> state): what utilisation is counted from."""
    risky_tasks: list[str] = field(default_factory=list[str])
    """Tasks that delivered a change of risk tier 3 in the window (a draft pull request)."""
    backups: Backups | None = None
    """The newest backup attempt and the newest good one; None when Postgres did not say."""

    @property
    def utilization(self) -> float | None:
        """Agents holding a task over agents online, now (None when none is online)."""
        online = [s for s in self.agent_states.values() if s != "offline"]
        return sum(1 for s in online if s in BUSY) / len(online) if online else None

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {
            "at": self.at.isoformat(),
            "utilization": self.utilization,
            "backups": None if self.backups is None else self.backups.as_json(self.at),
        }


class History:
    """Snapshots of the last `window`, oldest first."""

    def __init__(self, window: timedelta) -> None:
        self.window = window
        self.snapshots: deque[Snapshot] = deque()
        self.taken = 0  # how many ever taken; tests wait on it, never on time

    def add(self, snapshot: Snapshot) -> None:
        self.snapshots.append(snapshot)
        self.taken += 1
        while self.snapshots and self.snapshots[0].at < snapshot.at - self.window:
            self.snapshots.popleft()

    @property
    def latest(self) -> Snapshot | None:
        return self.snapshots[-1] if self.snapshots else None

    def utilization(self) -> dict[str, float]:
        """Busy time over online time in the window, per agent and for the `fleet`: the share
        of the snapshots an agent was online in in which it also held a task."""
        online: dict[str, int] = {}
        busy: dict[str, int] = {}
        for snapshot in self.snapshots:
            for agent, state in snapshot.agent_states.items():
                if state == "offline":
                    continue
                online[agent] = online.get(agent, 0) + 1
                busy[agent] = busy.get(agent, 0) + (state in BUSY)
        shares = {agent: busy[agent] / n for agent, n in online.items()}
        if online:
            shares["fleet"] = sum(busy.values()) / sum(online.values())
        return shares


async def take(
    sources: Sources,
    tracker: Tracker,
    thresholds: AlertThresholds,
    now: datetime,
    previous: Snapshot | None,
    backed_up: Backups | None = None,
) -> Snapshot:
    tracker.prune(now)
    reads, stuck = await asyncio.gather(
        sources.read_panels(["stats", "agents"]), _stuck(sources, now - thresholds.stuck_after)
    )
    stats, agents = reads["stats"], reads["agents"]
    by_state: dict[str, int] = stats.data.get("by_state", {}) if stats.available else {}
    by_lane: dict[str, int] = stats.data.get("queued_by_lane", {}) if stats.available else {}
    agents_total = agents_online = None
    listed = _agents(agents.data) if agents.available else None
    if listed is not None:
        agents_total = len(listed)
        agents_online = sum(1 for agent in listed if agent.get("state") != "offline")
    finished, failed = tracker.counts()
    since = previous.at if previous else now - thresholds.stuck_after
    return Snapshot(
        at=now,
        queue_depth=sum(by_lane.values()) if stats.available else None,
        queued_by_lane=by_lane,
        by_state=by_state,
        agents_total=agents_total,
        agents_online=agents_online,
        finished=finished,
        failed=failed,
        failure_rate_pct=round(100 * failed / finished, 1) if finished else None,
        completed_per_interval=tracker.completed_since(since),
        stuck_tasks=stuck,
        latency_ms=tracker.latencies(),
        agent_states={str(a.get("id")): str(a.get("state")) for a in listed or []},
        risky_tasks=tracker.risky_tasks(),
        backups=backed_up,
    )


def _agents(data: object) -> list[dict[str, Any]] | None:
    return cast(list[dict[str, Any]], data) if isinstance(data, list) else None


async def _stuck(sources: Sources, before: datetime) -> list[str] | None:
    """Assigned or working tasks whose last change is older than `before`; None if unknown."""
    stuck: list[str] = []
    reads = await asyncio.gather(
        *(sources.read("queue", f"/api/tasks?state={state}&limit=500") for state in ACTIVE)
    )
    for read in reads:
        if not read.available:
            return None
        for task in read.data.get("tasks", []):
            if datetime.fromisoformat(task["updated_at"]) < before:
                stuck.append(task["id"])
    return stuck
