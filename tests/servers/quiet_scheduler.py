"""The scheduler's app without its loops: its streams, schema and own state, nothing matching,
sweeping or reading reports. A test that drives `matching.match_once`, the sweep or the report
batch itself builds `SPEC` instead of the real one, so no loop races the step it checks."""

import dataclasses

from agentcom_common.service import Loops, Resources
from agentcom_scheduler import ops
from agentcom_scheduler.app import SPEC as REAL
from agentcom_scheduler.loops import Runtime
from agentcom_scheduler.settings import SchedulerSettings


async def _no_loops(settings: SchedulerSettings, res: Resources, _loops: Loops) -> Runtime:
    return Runtime.of(settings, ops.Scheduler(res.engine, res.outbox, res.relay))


SPEC = dataclasses.replace(REAL, build=_no_loops)
