"""Wire contracts: one pydantic model per NATS subject, reused by the HTTP APIs.

`EVENTS` maps each event subject to its model so a consumer can decode any event it receives.
"""

from types import MappingProxyType
from typing import Final

from agentcom_common import subjects
from agentcom_common.contracts.agent import AgentTransition, Progress, ToolCallReport
from agentcom_common.contracts.auth import TokenRevoked
from agentcom_common.contracts.base import Contract, Request
from agentcom_common.contracts.github import CiFailed, PrEscalated
from agentcom_common.contracts.health import HealingAction, HealingEnded, HealingStarted
from agentcom_common.contracts.hub import HubPauseChanged, HubStateChanged, HubWatchdogFired
from agentcom_common.contracts.llm import CallRouted, EndpointChanged, TierFallback
from agentcom_common.contracts.system import MessageRefused, ServiceStarted
from agentcom_common.contracts.task import TaskTransition

EVENTS: Final = MappingProxyType[str, type[Contract]](
    {
        subjects.SERVICE_STARTED: ServiceStarted,
        subjects.MESSAGE_REFUSED: MessageRefused,
        subjects.HUB_STATE_CHANGED: HubStateChanged,
        subjects.HUB_PAUSED: HubPauseChanged,
        subjects.HUB_RESUMED: HubPauseChanged,
        subjects.HUB_WATCHDOG_FIRED: HubWatchdogFired,
        subjects.HUB_HEALING_STARTED: HealingStarted,
        subjects.HUB_HEALING_ACTED: HealingAction,
        subjects.HUB_HEALING_ENDED: HealingEnded,
        subjects.TOKEN_REVOKED: TokenRevoked,
        subjects.GITHUB_CI_FAILED: CiFailed,
        subjects.GITHUB_PR_ESCALATED: PrEscalated,
        subjects.LLM_ENDPOINT_ADDED: EndpointChanged,
        subjects.LLM_ENDPOINT_REMOVED: EndpointChanged,
        subjects.LLM_ENDPOINT_SHARED: EndpointChanged,
        subjects.LLM_ENDPOINT_HEALTH_CHANGED: EndpointChanged,
        subjects.LLM_ROUTED: CallRouted,
        subjects.LLM_TIER_FALLBACK: TierFallback,
        subjects.TASK_SUBMITTED: TaskTransition,
        subjects.TASK_RELEASED: TaskTransition,
        subjects.TASK_ASSIGNED: TaskTransition,
        subjects.TASK_ACCEPTED: TaskTransition,
        subjects.TASK_REQUEUED: TaskTransition,
        subjects.TASK_RETRIED: TaskTransition,
        subjects.TASK_COMPLETED: TaskTransition,
        subjects.TASK_PARTIAL_PASS: TaskTransition,
        subjects.TASK_FAILED: TaskTransition,
        subjects.TASK_DEAD_LETTERED: TaskTransition,
        subjects.TASK_CANCELLED: TaskTransition,
        subjects.TASK_PROGRESS: Progress,
        subjects.TASK_TOOL_CALL: ToolCallReport,
        subjects.AGENT_REGISTERED: AgentTransition,
        subjects.AGENT_REMOVED: AgentTransition,
        subjects.AGENT_ONLINE: AgentTransition,
        subjects.AGENT_OFFLINE: AgentTransition,
        subjects.AGENT_IDLE: AgentTransition,
        subjects.AGENT_ASSIGNED: AgentTransition,
        subjects.AGENT_WORKING: AgentTransition,
        subjects.AGENT_BLOCKED: AgentTransition,
        subjects.AGENT_READY: AgentTransition,
    }
)

__all__ = ["EVENTS", "Contract", "Request", "ServiceStarted", "TokenRevoked"]
