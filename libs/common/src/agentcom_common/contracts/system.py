"""Contracts about the platform itself: process lifecycle and credentials."""

from datetime import datetime

from pydantic import Field

from agentcom_common.contracts.base import Contract


class ServiceStarted(Contract):
    """Published on `agentcom.evt.system.service_started` when a service finished starting."""

    service: str
    version: str
    instance: str = Field(description="Host and pid of the process, to tell replicas apart.")
    started_at: datetime


class HealthCheck(Contract):
    """One dependency check behind `/readyz`."""

    name: str
    ok: bool
    detail: str = ""


class Health(Contract):
    """The body of `/healthz` and `/readyz`."""

    service: str
    version: str
    ready: bool
    checks: list[HealthCheck] = Field(default_factory=list[HealthCheck])


class MessageRefused(Contract):
    """Published on `agentcom.evt.system.message_refused` when a consumer terminated a message it
    can never process (`agentcom_common.consumer`): the record of what was dropped and why."""

    consumer: str
    subject: str
    agent_id: str | None = Field(description="The agent whose subject it came on, if any.")
    stream_seq: int | None
    deliveries: int
    code: str
    detail: str
    violation: bool = Field(description="Whether it counted against the agent (input error).")
    at: datetime
