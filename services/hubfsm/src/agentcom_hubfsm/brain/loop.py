"""The brain's loop: wake or tick, gather the signals, apply the rules, move the hub, and run
the entry work of the state it is in.

One brain acts per deployment: every replica runs `Brain.run()`, which contends for a Postgres
advisory lock (`agentcom_common.leader`), and only the holder's `lead()` runs; the others take
over within a few `hub_leader_interval`s of its death. Each pass also locks the hub row, so
the routes of any replica (pause, stop) and the brain take turns.

Events wake, the tick guarantees: a goal event (any replica's) or a pause/resume/start/stop on
this replica wakes the loop; `hub_tick_interval` bounds how long anything else waits. The
watchdog is a deadline in the hub row, checked on every pass, so it survives restarts and
fires even while the hub is paused.

Entry work runs as a background task of the brain, never inside a pass. It is started once
per stay (a stay is identified by its `entered_at`), cancelled when the hub leaves the state,
and started again by the next brain after a restart or takeover: it must be safe to repeat.
Healing's entry work is a healing run (`healing.run`); it moves the hub to resting itself
when it ends. Its deadline is `hub_healing_watchdog`, not the global one: a run that hangs is
forced to resting with a critical `hub.watchdog_fired` (watchdog `healing`) and the run
recorded as `watchdog`. Improving's entry work, when `hub_improving_enabled`, is an improving
cycle (`improving.run`): scan tasks on agents, their findings filtered into goals; with no goal
made it moves the hub to resting itself unless contemplation is due. Contemplating's entry work is a contemplation cycle
(`contemplation.run`), which also moves the hub to resting itself when it ends. (Executing's
work is the goal driver, which runs on its own.)
"""

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import cancelling, leader, subjects
from agentcom_common.contracts.hub import HubState
from agentcom_common.service import Loops, Resources
from agentcom_hubfsm.brain import rules, signals, store
from agentcom_hubfsm.contemplation import run as contemplation_run, store as contemplation_store
from agentcom_hubfsm.healing import run as healing_run, store as healing_store
from agentcom_hubfsm.improving import run as improving_run, store as improving_store
from agentcom_hubfsm.settings import HubSettings

log = logging.getLogger(__name__)

Work = Callable[[], Coroutine[Any, Any, None]]
LEADER = "hubfsm-brain"  # the advisory lock's name: one active brain per database
GOAL_EVENTS = f"{subjects.PREFIX}.evt.goal.*"  # any replica's goal moves wake the brain


@dataclass(frozen=True, slots=True)
class Stay:
    state: HubState
    entered_at: datetime


@dataclass(slots=True)
class _Running:
    stay: Stay
    name: str
    task: asyncio.Task[None]


class Brain:
    def __init__(
        self,
        engine: AsyncEngine,
        nc: Client,
        *,
        instance: str,
        wake: asyncio.Event,
        tick: timedelta,
        watchdog: timedelta,
        leader_interval: timedelta = timedelta(seconds=1),
        entry: Mapping[HubState, tuple[str, Work]] | None = None,
        watchdogs: Mapping[HubState, timedelta] | None = None,
        healing: healing_store.Policy = healing_store.DEFAULT,
        contemplation: contemplation_store.Pace | None = None,
        improving: improving_store.Pace | None = None,
    ) -> None:
        self.engine = engine
        self.nc = nc
        self.instance = instance
        self.wake = wake
        self.tick = tick.total_seconds()
        self.watchdog = watchdog
        self.leader_interval = leader_interval
        self.actor = f"brain:{instance}"  # in the history: which replica's brain moved it
        self.entry = dict(entry or {})
        self.watchdogs = dict(watchdogs or {})  # a state's own deadline instead of `watchdog`
        self.healing = healing
        self.contemplation = contemplation  # when cycles are due; None: never
        self.improving = improving
        self._stay: Stay | None = None  # the stay whose entry work was started
        self._work: _Running | None = None

    async def run(self) -> None:
        """Contend for the lead with the other replicas; act as the brain while leading."""
        async with leader.Leadership(
            self.engine, name=LEADER, interval=self.leader_interval
        ) as lead:
            while True:
                try:
                    await lead.hold(self.lead)
                except Exception:  # Postgres or NATS gone while taking the lead: try again
                    log.exception("brain.lead_failed")
                await asyncio.sleep(self.tick)

    async def lead(self) -> None:
        """Act as the active brain until cancelled (`Leadership.hold` cancels it when this
        replica no longer leads)."""
        async with self.engine.begin() as conn:
            await store.set_leader(conn, self.instance)
        log.info("brain.leading", extra={"instance": self.instance})
        goals = await self.nc.subscribe(GOAL_EVENTS, cb=self._woken)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
        try:
            while True:
                try:
                    await self.step()
                except Exception:  # Postgres hiccup: the next pass tries again
                    log.exception("brain.step_failed")
                await cancelling.woken(self.wake, self.tick)
                self.wake.clear()
        finally:
            await self.stop_work()
            # the stay's work must start again when this replica leads again (a lost lock under
            # load, then retaken): without this `_follow` took it as still running
            self._stay = None
            with contextlib.suppress(Exception):  # NATS may be gone already
                await goals.unsubscribe()
            await asyncio.shield(self._resign())

    async def _resign(self) -> None:
        with contextlib.suppress(Exception):  # Postgres gone: the next leader overwrites it
            async with self.engine.begin() as conn:
                await store.set_leader(conn, None, was=self.instance)

    async def _woken(self, _msg: Msg) -> None:
        self.wake.set()

    async def step(self) -> Stay:
        """One pass: the watchdog first, then (unless paused) the first rule that applies."""
        async with self.engine.begin() as conn:
            row = await store.load(conn, lock=True)
            # under the row lock: a healing run ends its run row and moves the hub in one
            # transaction, so signals read before it could show no cooldown for a hub that
            # is already back in resting, and heal again at once
            seen = await signals.gather(conn, self.healing, self.contemplation, self.improving)
            came = HubState(row.state)
            stay, reason = Stay(came, row.entered_at), ""
            if row.watchdog_at is not None and row.watchdog_at <= row.now:
                await store.fire_watchdog(conn, row, self.watchdog)
                if came is HubState.HEALING:  # the run hung: its record says so
                    report = f"the run passed its {row.watchdog_at - row.entered_at} watchdog"
                    await healing_store.end_run(conn, row.entered_at, "watchdog", report)
                stay, reason = Stay(HubState.RESTING, row.now), "watchdog"
            elif not row.paused and (rule := rules.decide(came, seen)) and rule.to is not None:
                deadline = self.watchdogs.get(rule.to, self.watchdog)
                moved = await store.move(
                    conn, row, rule.to, reason=rule.name, actor=self.actor, watchdog=deadline
                )
                stay, reason = Stay(rule.to, moved.row.entered_at), rule.name
        if stay.state is not came:
            extra = {"from": came.value, "to": stay.state.value, "reason": reason}
            if reason == "watchdog":
                log.critical("hub.watchdog_fired", extra=extra)
            else:
                log.info("hub.moved", extra=extra)
        await self._follow(stay)
        return stay

    async def _follow(self, stay: Stay) -> None:
        """Keep the entry work in step with the hub's stay."""
        running = self._work
        if running is not None and (running.stay != stay or running.task.done()):
            await self.stop_work()
        if self._stay == stay:
            return
        self._stay = stay
        entry = self.entry.get(stay.state)
        if entry is None:
            return
        name, work = entry
        task = asyncio.create_task(work(), name=f"hub-{stay.state.value}-{name}")
        task.add_done_callback(self._work_done)
        self._work = _Running(stay, name, task)
        async with self.engine.begin() as conn:
            await store.set_work(conn, stay.state, stay.entered_at, name)
        log.info("hub.work_started", extra={"state": stay.state.value, "work": name})

    def _work_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("hub.work_failed", extra={"work": task.get_name()}, exc_info=error)
        self.wake.set()  # its outcome may let a rule fire; and its name leaves the row

    async def stop_work(self) -> None:
        """Cancel the entry work running, if any (leaving the state, or no longer leading)."""
        running, self._work = self._work, None
        if running is None:
            return
        await cancelling.cancel_and_wait([running.task])
        with contextlib.suppress(Exception):  # Postgres hiccup: the next stay clears it
            async with self.engine.begin() as conn:
                await store.set_work(conn, running.stay.state, running.stay.entered_at, None)


def instance_name() -> str:
    """host:pid:random, unique even for two brains in one process (the tests run two)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


async def start(
    res: Resources,
    loops: Loops,
    settings: HubSettings,
    wake: asyncio.Event,
    contemplator: contemplation_run.Contemplator,
    improver: improving_run.Improver | None = None,
) -> None:
    healer = healing_run.Healer(res.engine, res.nc, settings, wake)
    entry: dict[HubState, tuple[str, Work]] = {
        HubState.HEALING: ("healing-run", healer.run),
        HubState.CONTEMPLATING: ("contemplation", contemplator.run),
    }
    if improver is not None and settings.hub_improving_enabled:
        entry[HubState.IMPROVING] = ("improvement-scan", improver.run)
    brain = Brain(
        res.engine,
        res.nc,
        instance=instance_name(),
        wake=wake,
        tick=settings.hub_tick_interval,
        watchdog=settings.hub_global_watchdog,
        leader_interval=settings.hub_leader_interval,
        entry=entry,
        watchdogs={HubState.HEALING: settings.hub_healing_watchdog},
        healing=healing_store.Policy.of(settings),
        contemplation=contemplation_store.Pace.of(settings),
        improving=improving_store.Pace.of(settings),
    )
    loops.spawn("hub-brain", brain.run())
