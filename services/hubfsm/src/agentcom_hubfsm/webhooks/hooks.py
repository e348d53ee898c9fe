"""What the webhook handlers work with, built once in the app's lifespan."""

import asyncio
from dataclasses import dataclass

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_hubfsm.goals import ops as goal_ops
from agentcom_hubfsm.queueclient import QueueClient
from agentcom_hubfsm.repocache import RepoCache
from agentcom_hubfsm.settings import HubSettings
from agentcom_hubfsm.webhooks.github import GitHub


@dataclass(frozen=True, slots=True)
class Hooks:
    engine: AsyncEngine
    outbox: Table
    settings: HubSettings
    queue: QueueClient
    github: GitHub
    cache: RepoCache
    goals: goal_ops.Goals
    brain_wake: asyncio.Event
