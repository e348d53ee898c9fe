"""The scheduler's instruments: agents by state, agents taken offline for missed heartbeats,
tasks handed back (and why), the report consumer's lag, and each agent's busy and online time
(utilisation = busy over online, per agent and for the fleet).

Agents by state, the lag and the two times are sampled every `metrics_sample_interval` from
Postgres and JetStream, never on the report path. The times are sampled too: an agent online at
a sample adds the interval since the last one to its online time, and to its busy time if it
holds a task (assigned or working); so utilisation is exact to one interval. With several
scheduler replicas each samples, so both times are counted once per replica: their ratio (the
utilisation) stays right. Made at import like a logger.
"""

import time
from collections.abc import Awaitable, Callable
from typing import Final

from nats.js import JetStreamContext

from agentcom_common import metering
from agentcom_common.contracts.agent import AgentState
from agentcom_common.service import Resources
from agentcom_scheduler import store

BUSY: Final = frozenset({AgentState.ASSIGNED.value, AgentState.WORKING.value})
HANDBACK_REASONS: Final = ("failed", "requeue", "overdue", "cancelled")
_m = metering.meter("agentcom.scheduler")

silent = _m.create_counter(
    "agentcom.agents.silent",
    unit="{agent}",
    description="Agents taken offline because their heartbeats stopped (missed heartbeats).",
)
handbacks = _m.create_counter(
    "agentcom.tasks.handed_back",
    unit="{task}",
    description="Tasks taken back from an agent, by reason (failed: went silent; requeue: not "
    "accepted in time; overdue: past its deadline; cancelled: stopped on a cancel).",
)
busy_time = _m.create_counter(
    "agentcom.agent.busy.time",
    unit="s",
    description="Time an agent held a task (assigned or working), by agent.",
)
online_time = _m.create_counter(
    "agentcom.agent.online.time", unit="s", description="Time an agent was not offline, by agent."
)
agents = metering.Sampled(_m, "agentcom.agents", "{agent}", "Registered agents by state.")
utilization = metering.Sampled(
    _m,
    "agentcom.agent.utilization",
    "1",
    'Share of agents not offline that hold a task now, for the fleet (agent="fleet").',
)
report_lag = metering.Sampled(
    _m,
    "agentcom.reports.lag",
    "s",
    "Age of the oldest agent report the scheduler has not read yet (0 when caught up).",
)


def sampler(
    res: Resources, *, lag: Callable[[JetStreamContext], Awaitable[float]]
) -> metering.Sampler:
    """`lag` is `presence.report_lag` (passed in: presence records into this module). Makes
    the silence and hand-back counters exist at 0 (a panel on them reads 0, not no data)."""
    metering.zero(silent, [{}])
    metering.zero(handbacks, [{"reason": r} for r in HANDBACK_REASONS])
    last = [time.monotonic()]

    async def sample() -> None:
        async with res.engine.connect() as conn:
            rows = await store.all_agents(conn)
        now = time.monotonic()
        elapsed, last[0] = now - last[0], now
        counts = dict.fromkeys((s.value for s in AgentState), 0)
        online = held = 0
        for row in rows:
            counts[row.state] += 1
            if row.state == AgentState.OFFLINE.value:
                continue
            online += 1
            online_time.add(elapsed, {"agent": row.id})
            busy = row.state in BUSY
            held += busy
            busy_time.add(elapsed if busy else 0.0, {"agent": row.id})  # 0: the series exists
        agents.set({(("state", state),): n for state, n in counts.items()})
        utilization.set({(("agent", "fleet"),): held / online if online else 0.0})
        report_lag.set({(): await lag(res.js)})

    return sample
