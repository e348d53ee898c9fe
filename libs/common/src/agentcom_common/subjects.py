"""NATS subject names and JetStream stream names.

Rules: parameterised subjects come only from the builders here, which refuse ids outside
`[A-Za-z0-9_-]{1,64}`: a `.`, `*` or `>` in an id would widen a subscription or a permission.
Events are past tense and their tail names the event (`agentcom.evt.task.completed`).
"""

import re
from typing import Final

PREFIX: Final = "agentcom"

EVENTS_STREAM: Final = "EVENTS"
INBOX_STREAM: Final = "INBOX"
REPORTS_STREAM: Final = "REPORTS"

EVENTS_ALL: Final = f"{PREFIX}.evt.>"
INBOX_ALL: Final = f"{PREFIX}.agent.*.inbox"
REPORTS_ALL: Final = f"{PREFIX}.agent.*.report"

STREAM_SUBJECTS: Final[dict[str, tuple[str, ...]]] = {
    EVENTS_STREAM: (EVENTS_ALL,),
    INBOX_STREAM: (INBOX_ALL,),
    REPORTS_STREAM: (REPORTS_ALL,),
}

# the platform's own events (a process started, a consumer dropped a message), apart from `hub`,
# which is the hub state machine's
SERVICE_STARTED: Final = f"{PREFIX}.evt.system.service_started"
MESSAGE_REFUSED: Final = f"{PREFIX}.evt.system.message_refused"
HUB_STATE_CHANGED: Final = f"{PREFIX}.evt.hub.state_changed"
HUB_PAUSED: Final = f"{PREFIX}.evt.hub.paused"
HUB_RESUMED: Final = f"{PREFIX}.evt.hub.resumed"
HUB_WATCHDOG_FIRED: Final = f"{PREFIX}.evt.hub.watchdog_fired"
# healing runs of the hub brain (`contracts.health`): started, one per remedy applied, ended
HUB_HEALING: Final = f"{PREFIX}.evt.hub.healing.*"
HUB_HEALING_STARTED: Final = f"{PREFIX}.evt.hub.healing.started"
HUB_HEALING_ACTED: Final = f"{PREFIX}.evt.hub.healing.acted"
HUB_HEALING_ENDED: Final = f"{PREFIX}.evt.hub.healing.ended"
TOKEN_REVOKED: Final = f"{PREFIX}.evt.auth.token_revoked"
# what the hub made of GitHub's webhooks (`contracts.github`)
GITHUB_CI_FAILED: Final = f"{PREFIX}.evt.github.ci_failed"
GITHUB_PR_ESCALATED: Final = f"{PREFIX}.evt.github.pr_escalated"

# task events, published by the queue with a `TaskTransition` body (one per transition), except
# `progress` and `tool_call`: a running task's report as its agent sent it, relayed live by
# the scheduler
TASK_EVENTS: Final = f"{PREFIX}.evt.task.>"
TASK_SUBMITTED: Final = f"{PREFIX}.evt.task.submitted"
TASK_RELEASED: Final = f"{PREFIX}.evt.task.released"
TASK_ASSIGNED: Final = f"{PREFIX}.evt.task.assigned"
TASK_ACCEPTED: Final = f"{PREFIX}.evt.task.accepted"
TASK_REQUEUED: Final = f"{PREFIX}.evt.task.requeued"
TASK_RETRIED: Final = f"{PREFIX}.evt.task.retried"
TASK_COMPLETED: Final = f"{PREFIX}.evt.task.completed"
TASK_PARTIAL_PASS: Final = f"{PREFIX}.evt.task.partial_pass"
TASK_FAILED: Final = f"{PREFIX}.evt.task.failed"
TASK_DEAD_LETTERED: Final = f"{PREFIX}.evt.task.dead_lettered"
TASK_CANCELLED: Final = f"{PREFIX}.evt.task.cancelled"
TASK_PROGRESS: Final = f"{PREFIX}.evt.task.progress"
TASK_TOOL_CALL: Final = f"{PREFIX}.evt.task.tool_call"

# agent events, published by the scheduler with an `AgentTransition` body
AGENT_EVENTS: Final = f"{PREFIX}.evt.agent.>"
AGENT_REGISTERED: Final = f"{PREFIX}.evt.agent.registered"
AGENT_REMOVED: Final = f"{PREFIX}.evt.agent.removed"
AGENT_ONLINE: Final = f"{PREFIX}.evt.agent.online"
AGENT_OFFLINE: Final = f"{PREFIX}.evt.agent.offline"
AGENT_IDLE: Final = f"{PREFIX}.evt.agent.idle"
AGENT_ASSIGNED: Final = f"{PREFIX}.evt.agent.assigned"
AGENT_WORKING: Final = f"{PREFIX}.evt.agent.working"
AGENT_BLOCKED: Final = f"{PREFIX}.evt.agent.blocked"
AGENT_READY: Final = f"{PREFIX}.evt.agent.ready"

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TOKEN = re.compile(r"[a-z_]{1,64}")


def checked_id(value: str, what: str = "id") -> str:
    """Return `value` if it is safe inside a subject, else raise ValueError naming the rule."""
    if not _ID.fullmatch(value):
        raise ValueError(f"{what} {value!r} must match [A-Za-z0-9_-]{{1,64}}")
    return value


def event(area: str, name: str) -> str:
    """`agentcom.evt.<area>.<name>`, for example `event("task", "completed")`."""
    if not (_TOKEN.fullmatch(area) and _TOKEN.fullmatch(name)):
        raise ValueError(f"event area and name must be lowercase words, got {area!r}.{name!r}")
    return f"{PREFIX}.evt.{area}.{name}"


def agent_inbox(agent_id: str) -> str:
    return f"{PREFIX}.agent.{checked_id(agent_id, 'agent id')}.inbox"


def agent_report(agent_id: str) -> str:
    return f"{PREFIX}.agent.{checked_id(agent_id, 'agent id')}.report"


def agent_all(agent_id: str) -> str:
    """Everything one agent may touch: its NATS user is allowed exactly this."""
    return f"{PREFIX}.agent.{checked_id(agent_id, 'agent id')}.>"


def rpc_group(service: str) -> str:
    """The nats.micro group of `service`: `agentcom.rpc.queue`, `agentcom.rpc.llm`…"""
    return f"{PREFIX}.rpc.{checked_id(service, 'service')}"


def micro_name(service: str) -> str:
    """The nats.micro service name, as `nats micro ls` shows it."""
    return f"{PREFIX}-{checked_id(service, 'service')}"


def agent_consumer(agent_id: str) -> str:
    """The durable INBOX consumer of one agent (created at registration, bound by its sidecar)."""
    return f"agent-{checked_id(agent_id, 'agent id')}"


def agent_reply_prefix(agent_id: str) -> str:
    """The reply-inbox prefix an agent's connection uses (`inbox_prefix` in nats-py), so its
    NATS user may subscribe to its own replies and nobody else's."""
    return f"_INBOX_{checked_id(agent_id, 'agent id')}"


LLM_ENDPOINT_ADDED: Final = f"{PREFIX}.evt.llm.endpoint_added"
LLM_ENDPOINT_REMOVED: Final = f"{PREFIX}.evt.llm.endpoint_removed"
LLM_ENDPOINT_SHARED: Final = f"{PREFIX}.evt.llm.endpoint_shared"
LLM_ENDPOINT_HEALTH_CHANGED: Final = f"{PREFIX}.evt.llm.endpoint_health_changed"
LLM_ROUTED: Final = f"{PREFIX}.evt.llm.routed"
LLM_TIER_FALLBACK: Final = f"{PREFIX}.evt.llm.tier_fallback"  # set or ended: replicas re-read
