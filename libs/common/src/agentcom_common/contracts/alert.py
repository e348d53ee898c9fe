"""Alert contracts: the bodies of `agentcom.evt.alert.*`, published by the dashboard."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from agentcom_common.contracts.base import Contract


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"  # fires even inside the rule's cooldown; also sent as a Web Push


class AlertFired(Contract):
    """`agentcom.evt.alert.fired`: a rule's condition became true."""

    rule_id: str
    severity: Severity
    message: str = Field(max_length=2000)
    details: dict[str, Any] = Field(default_factory=dict[str, Any])
    fired_at: datetime


class AlertCleared(Contract):
    """`agentcom.evt.alert.cleared`: the condition is false again."""

    rule_id: str
    cleared_at: datetime


class AlertAcknowledged(Contract):
    """`agentcom.evt.alert.acknowledged`: an admin has seen the active alert."""

    rule_id: str
    by: str
    at: datetime
