"""The scheduler's loops, started with the service: reports, presence sweep, matching."""

from agentcom_common.service import Loops, Resources
from agentcom_scheduler import matching, ops, presence
from agentcom_scheduler.settings import SchedulerSettings


async def start(res: Resources, loops: Loops, *, settings: SchedulerSettings) -> None:
    s = ops.Scheduler(res.engine, res.outbox)
    silence = settings.scheduler_heartbeat_interval * settings.scheduler_missed_heartbeats
    loops.spawn("agent-reports", presence.consume_reports(s, res.nc, res.js))
    loops.spawn(
        "matching",
        matching.match_forever(
            s,
            res.nc,
            res.js,
            settings.scheduler_sweep_interval,
            settings.scheduler_execution_timeout,
        ),
    )
    loops.spawn(
        "presence-sweep",
        presence.sweep_forever(
            s,
            res.nc,
            res.js,
            silence,
            settings.scheduler_accept_timeout,
            settings.scheduler_sweep_interval,
        ),
    )
