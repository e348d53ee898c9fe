"""The scheduler's loops, started with the service: report consumer and presence sweep."""

from agentcom_common.service import Loops, Resources
from agentcom_scheduler import ops, presence
from agentcom_scheduler.settings import SchedulerSettings


async def start(res: Resources, loops: Loops, *, settings: SchedulerSettings) -> None:
    s = ops.Scheduler(res.engine, res.outbox)
    silence = settings.scheduler_heartbeat_interval * settings.scheduler_missed_heartbeats
    loops.spawn("presence-reports", presence.consume_reports(s, res.js))
    loops.spawn(
        "presence-sweep", presence.sweep_forever(s, silence, settings.scheduler_sweep_interval)
    )
