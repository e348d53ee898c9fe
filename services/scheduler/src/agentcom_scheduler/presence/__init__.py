"""Agent reports: hello and heartbeats bring an agent online, silence takes it offline, and
task outcomes are forwarded to the queue and move the agent.

Reports arrive on `agentcom.agent.<id>.report` (stream REPORTS). The subject, which NATS
permissions tie to the agent's own credentials, says who is speaking; a payload naming another
agent is refused. The sweep is the safety net that needs no message at all: any agent without a
heartbeat for `missed_heartbeats` intervals less a margin (`silence_for`) goes offline, so its task
is back in the queue within `missed_heartbeats` intervals.

One module per job: `stream` (the consumer and its batches), `reports` (one report at a time),
`heartbeats` (many at once), `cutoffs` (refused reports counted against their agent),
`silence` (the sweep), `stranded` (its safety net); `core` holds what they share.
"""

from agentcom_scheduler.presence.core import CONSUMER, Gate, transition_if
from agentcom_scheduler.presence.reports import on_report
from agentcom_scheduler.presence.silence import (
    DETECTION_MARGIN,
    silence_for,
    sweep,
    sweep_forever,
)
from agentcom_scheduler.presence.stranded import requeue_stranded, stranded_forever
from agentcom_scheduler.presence.stream import REPORTS_AT_ONCE, consume_reports, report_lag

__all__ = [
    "CONSUMER",
    "DETECTION_MARGIN",
    "REPORTS_AT_ONCE",
    "Gate",
    "consume_reports",
    "on_report",
    "report_lag",
    "requeue_stranded",
    "silence_for",
    "stranded_forever",
    "sweep",
    "sweep_forever",
    "transition_if",
]
