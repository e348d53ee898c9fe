"""The dashboard's running state and its two loops: the event follower and the metrics loop.

`Live` is built once in the lifespan (a starter) and put on `app.state.live`; routes read it.

Every replica follows the events, takes snapshots and serves the page and its socket; only the
holder of the `dashboard-alerts` leader lock (`agentcom_common.leader`) judges the alert rules
and sends pushes (`pushing`, from a durable consumer, so a push waits out a change of leader),
so one deployment fires an alert once and pushes it once. The others read
the alert book from `dashboard.alerts` at each snapshot, so every replica lists the same alerts
and a new leader starts from what the last one recorded.
"""

import asyncio
import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import cast

from nats.aio.msg import Msg
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import auth, backups, clock, consumer, leader, outbox, subjects
from agentcom_common.contracts.alert import AlertFired
from agentcom_common.service import Loops, Resources
from agentcom_dashboard import alert_store, events, metrics, pushing
from agentcom_dashboard.alerts import AlertBook, Change
from agentcom_dashboard.push import Pusher, load_or_create_vapid
from agentcom_dashboard.settings import AlertThresholds, DashboardSettings, load_thresholds
from agentcom_dashboard.sources import Sources
from agentcom_dashboard.tracker import Tracker

log = logging.getLogger(__name__)
SERVICES = ("queue", "scheduler", "llm-registry", "hubfsm")
HEARTBEAT_FIELDS = ("cpu_percent", "ram_percent", "vram_percent", "load")
ISOLATIONS = frozenset({"namespaces", "none", "unavailable"})  # Heartbeat.isolation
MAX_AGENTS = 10_000
LEADER = "dashboard-alerts"


@dataclass
class ThresholdFile:
    """Re-reads the thresholds file when its modification time or size changes.

    A file that cannot be read (permissions, I/O error) or parsed is reported once per change,
    naming the file and the problem, and the last good thresholds stay in force (the defaults,
    if it was bad from the start): before, an unreadable file raised in every snapshot, so no
    snapshot was taken and no alert could fire. `problem` holds the report until a good read.
    """

    path: Path
    current: AlertThresholds = field(default_factory=AlertThresholds)
    problem: str | None = None
    _stamp: tuple[int, int] | None = None

    def load(self) -> AlertThresholds:
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            stamp = None
        if stamp != self._stamp:
            self._stamp = (
                stamp  # first: a file that keeps failing is reported once, not per snapshot
            )
            try:
                self.current = load_thresholds(self.path)
            except (OSError, ValueError) as exc:  # ValueError: a bad edit (pydantic, encoding)
                self.problem = f"{self.path}: {exc}"[:500]
                log.warning(
                    "alerts.thresholds_not_loaded",
                    extra={"path": str(self.path), "error": str(exc)[:500]},
                )
            else:
                self.problem = None
                log.info("alerts.thresholds_loaded", extra={"path": str(self.path)})
        return self.current


@dataclass
class Live:
    res: Resources
    settings: DashboardSettings
    sources: Sources
    pusher: Pusher
    tracker: Tracker
    history: metrics.History
    thresholds: ThresholdFile
    book: AlertBook = field(default_factory=AlertBook)
    sockets: int = 0
    presence: dict[str, dict[str, object]] = field(default_factory=dict[str, dict[str, object]])
    lead: leader.Leadership | None = None
    started_at: datetime = field(default_factory=clock.now)  # the age of "no backup at all"

    @property
    def engine(self) -> AsyncEngine:
        return self.res.engine

    @property
    def is_leader(self) -> bool:
        """Whether this replica judges the rules and sends pushes now."""
        return self.lead is not None and self.lead.is_leader

    async def on_event(self, event: events.Event) -> None:
        self.tracker.on_event(event)

    async def on_report(self, msg: Msg) -> None:
        """Remember each agent's last heartbeat (age, CPU, RAM, VRAM, isolation) for the agents
        panel.

        The agent id comes from the subject, which NATS permissions tie to that agent.
        """
        parts = msg.subject.split(".")
        try:
            body = json.loads(msg.data)
        except ValueError:
            return
        if len(parts) != 4 or not isinstance(body, dict):
            return
        report = cast(dict[str, object], body)
        if report.get("kind") != "heartbeat":
            return
        if parts[2] not in self.presence and len(self.presence) >= MAX_AGENTS:
            return
        load = {
            k: report.get(k) for k in HEARTBEAT_FIELDS if isinstance(report.get(k), int | float)
        }
        isolation = report.get("isolation")  # shown: an agent loop running unisolated
        if isolation in ISOLATIONS:
            load["isolation"] = isolation
        self.presence[parts[2]] = load | {"heartbeat_at": clock.now().isoformat()}

    async def step(self) -> None:
        """Take one snapshot, judge the rules, publish what changed."""
        thresholds = self.thresholds.load().with_backup_interval(self.settings.backup_interval)
        snapshot = await metrics.take(
            self.sources,
            self.tracker,
            thresholds,
            clock.now(),
            self.history.latest,
            await self.backups(),
        )
        self.history.add(snapshot)
        history = list(self.history.snapshots)
        # what the leader recorded, and acknowledgements made through any replica
        self.book = await alert_store.load(self.engine)
        if not self.is_leader:
            return
        await self.book.apply(
            lambda: self.book.evaluate(history, thresholds, snapshot.at), self.publish
        )

    async def backups(self) -> metrics.Backups | None:
        """The backup record (`agentcom_common.backups`); None when Postgres does not answer."""
        try:
            recorded = await backups.latest(self.engine)
        except (OSError, SQLAlchemyError):
            log.warning("metrics.backups_not_read", exc_info=True)
            return None
        return metrics.Backups(recorded, self.started_at)

    async def publish(self, changes: list[Change]) -> None:
        if not changes:
            return
        async with self.engine.begin() as conn:  # the relay publishes after commit
            for change in changes:
                name = type(change).__name__.removeprefix("Alert").lower()
                await alert_store.record(conn, change)
                await outbox.add(conn, self.res.outbox, subjects.event("alert", name), change)
        for change in changes:  # a critical one is pushed from its event (`pushing`)
            if isinstance(change, AlertFired):
                log.info("alert.fired", extra={"rule": change.rule_id, "severity": change.severity})

    async def run_metrics(self) -> None:
        interval = self.settings.dashboard_snapshot_interval.total_seconds()
        while True:
            try:
                await self.step()
            except Exception:  # Postgres or NATS hiccup: the next snapshot tries again
                log.exception("metrics.step_failed")
            await asyncio.sleep(interval)


async def read_token(settings: DashboardSettings, engine: AsyncEngine) -> str:
    """The viewer token the dashboard reads with: the setting, else one kept under home."""
    if settings.dashboard_read_token is not None:
        token = settings.dashboard_read_token.get_secret_value()
    else:
        token = _kept_token(settings.home / "dashboard-read.token")
    await auth.store(engine, token, auth.Role.VIEWER, "dashboard (reads)")
    return token


def _kept_token(path: Path) -> str:
    if path.is_file():
        return path.read_text().strip()
    token = auth.new_token()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token + "\n")
    except FileExistsError:  # another replica wrote it first: use theirs
        return path.read_text().strip()
    except OSError:  # read-only home: a token for this run only (one more row in auth.tokens)
        log.warning("dashboard.read_token_not_kept", extra={"path": str(path)})
    return token


async def start(settings: DashboardSettings, res: Resources, loops: Loops) -> Live:
    timeout = settings.dashboard_source_timeout.total_seconds()
    urls = {name: settings.url_of(name) for name in SERVICES}
    vapid = await load_or_create_vapid(res.engine)
    live = Live(
        res=res,
        settings=settings,
        sources=Sources(urls, await read_token(settings, res.engine), timeout),
        pusher=Pusher(
            res.engine, vapid, settings.dashboard_push_subject, settings.dashboard_push_ttl, timeout
        ),
        tracker=Tracker(settings.dashboard_metrics_window),
        history=metrics.History(settings.dashboard_metrics_window),
        thresholds=ThresholdFile(settings.alerts_file),
        book=await alert_store.load(res.engine),
    )
    await backups.migrate(res.engine)  # read before any backup was ever recorded
    live.thresholds.load()  # at start, so a bad file is reported when the service comes up
    since = clock.now() - settings.dashboard_metrics_window
    subscription = await events.follow(res.js, live.on_event, since=since)
    await res.nc.subscribe(subjects.REPORTS_ALL, cb=live.on_report)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
    loops.spawn("dashboard-leader", _contend(live, settings))
    loops.spawn("dashboard-metrics", live.run_metrics())
    loops.spawn("dashboard-close", _close_on_cancel(live, subscription))
    return live


async def _contend(live: Live, settings: DashboardSettings) -> None:
    """Contend for the alerts' leader lock for the life of the process."""
    async with leader.Leadership(
        live.engine, name=LEADER, interval=settings.dashboard_leader_interval
    ) as lead:
        live.lead = lead
        try:
            await lead.hold(
                lambda: pushing.run(
                    live.res.js,
                    live.pusher,
                    consumer.Policy.of(settings),
                    settings.dashboard_push_ttl,
                )
            )
        finally:
            live.lead = None


async def _close_on_cancel(live: Live, subscription: object) -> None:
    """Parks until the service stops, then closes the clients (Loops cancels every loop)."""
    try:
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
        await live.sources.close()
        await live.pusher.close()
