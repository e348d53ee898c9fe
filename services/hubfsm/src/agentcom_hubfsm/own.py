"""The hub's own state: the ops objects its routes, NATS handlers and loops share, built once
per app by `app.build` (two apps in one process share none of it)."""

from dataclasses import dataclass

from agentcom_hubfsm.brain import ops as brain_ops
from agentcom_hubfsm.contemplation import ops as contemplation_ops
from agentcom_hubfsm.goals import ops as goals_ops
from agentcom_hubfsm.improving import ops as improving_ops
from agentcom_hubfsm.webhooks.hooks import Hooks


@dataclass(frozen=True, slots=True)
class Own:
    goals: goals_ops.Goals
    hub: brain_ops.Hub
    proposals: contemplation_ops.Proposals
    findings: improving_ops.Findings
    hooks: Hooks
