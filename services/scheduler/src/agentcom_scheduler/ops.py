"""Scheduler use cases, one transaction each; HTTP routes call these."""

import secrets
from dataclasses import dataclass, field

from nats.js import JetStreamContext
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agentcom_common import auth, clock, messaging, natsauth, outbox, subjects
from agentcom_common.contracts.agent import (
    AgentRegistered,
    AgentState,
    AgentTransition,
    AgentView,
    RegisterAgent,
    Restart,
)
from agentcom_common.errors import ConflictError, DuplicateError, NotFoundError
from agentcom_common.outbox import Relay
from agentcom_common.repos import repo_keys
from agentcom_scheduler import names, store
from agentcom_scheduler.wakeups import Wakeups


@dataclass(frozen=True, slots=True)
class Scheduler:
    """What the use cases need; one per app (`app.build`), shared by routes and loops."""

    engine: AsyncEngine
    outbox: Table
    relay: Relay  # woken after the commits that skip the NOTIFY (matching's offers)
    wakeups: Wakeups = field(default_factory=Wakeups)


def view(row: store.AgentRow) -> AgentView:
    return AgentView(
        id=row.id,
        state=AgentState(row.state),
        capabilities=list(row.capabilities),
        repos=list(row.repos),
        token_id=row.token_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_seen=row.last_seen,
        resources=row.resources,
        blocked_reason=row.blocked_reason,
        supervisor=row.supervisor,
    )


async def register(s: Scheduler, body: RegisterAgent) -> AgentRegistered:
    """Register an agent with its own `agent` token. A taken name is a 409, never a second agent."""
    async with s.engine.begin() as conn:
        name = body.name or names.unused(await store.ids(conn))
        token = auth.new_token()
        nats_password = secrets.token_urlsafe(32)
        row = await store.insert_agent(
            conn,
            {
                "id": name,
                "state": AgentState.OFFLINE.value,
                "capabilities": list(body.capabilities),
                "repos": repo_keys(body.repos),  # as the queue stores a task's repo
                "token_id": auth.token_id(token),
                "nats_secret_hash": natsauth.hash_secret(nats_password),
            },
        )
        if row is None:
            raise DuplicateError(
                f"an agent named {name} exists; remove it first or pick another name",
                code="agent_exists",
                field="name",
            )
        # same transaction: an agent never exists without its token, nor a token without it
        await auth.store_in(conn, token, auth.Role.AGENT, f"agent {name}")
        await _emit(
            s, conn, name, None, AgentState.OFFLINE, "registered", subjects.AGENT_REGISTERED
        )
    return AgentRegistered(
        **view(row).model_dump(), token=token, nats_user=name, nats_password=nats_password
    )


async def rotate(s: Scheduler, agent_id: str) -> tuple[AgentRegistered, str]:
    """New bearer token and NATS password for an agent; the old ones stop working in the same
    transaction. Returns the new credentials and the revoked token id."""
    token = auth.new_token()
    nats_password = secrets.token_urlsafe(32)
    async with s.engine.begin() as conn:
        before = await store.fetch(conn, agent_id, lock=True)
        if before is None:
            raise NotFoundError(f"no agent {agent_id}", code="agent_not_found")
        await auth.revoke_in(conn, before.token_id, s.outbox)
        await auth.store_in(conn, token, auth.Role.AGENT, f"agent {agent_id}")
        row = await store.set_credentials(
            conn, agent_id, auth.token_id(token), natsauth.hash_secret(nats_password)
        )
    made = AgentRegistered(
        **view(row).model_dump(), token=token, nats_user=agent_id, nats_password=nats_password
    )
    return made, before.token_id


async def _emit(
    s: Scheduler,
    conn: AsyncConnection,
    agent_id: str,
    source: AgentState | None,
    target: AgentState,
    reason: str,
    subject: str,
) -> None:
    event = AgentTransition(
        agent_id=agent_id, from_state=source, to_state=target, reason=reason, at=clock.now()
    )
    await outbox.add(conn, s.outbox, subject, event)


async def remove(s: Scheduler, agent_id: str) -> AgentView:
    """Remove an agent and revoke its token in one transaction."""
    async with s.engine.begin() as conn:
        row = await store.remove(conn, agent_id)
        if row is None:
            raise NotFoundError(f"no agent {agent_id}", code="agent_not_found")
        await auth.revoke_in(conn, row.token_id, s.outbox)
        await _emit(
            s,
            conn,
            agent_id,
            AgentState(row.state),
            AgentState.OFFLINE,
            "removed",
            subjects.AGENT_REMOVED,
        )
    return view(row)


async def get(s: Scheduler, agent_id: str) -> AgentView:
    async with s.engine.connect() as conn:
        row = await store.fetch(conn, agent_id)
    if row is None:
        raise NotFoundError(f"no agent {agent_id}", code="agent_not_found")
    return view(row)


async def listing(s: Scheduler) -> list[AgentView]:
    async with s.engine.connect() as conn:
        return [view(r) for r in await store.all_agents(conn)]


async def history(s: Scheduler, agent_id: str) -> list[AgentTransition]:
    async with s.engine.connect() as conn:
        if await store.fetch(conn, agent_id) is None:
            raise NotFoundError(f"no agent {agent_id}", code="agent_not_found")
        rows = await store.history(conn, agent_id)
    return [
        AgentTransition(
            agent_id=agent_id,
            from_state=AgentState(r.from_state) if r.from_state else None,
            to_state=AgentState(r.to_state),
            reason=r.reason,
            at=r.at,
        )
        for r in rows
    ]


async def restart(s: Scheduler, js: JetStreamContext, agent_id: str) -> AgentView:
    """Ask the agent's sidecar to restart (a `restart` in its inbox); it reports `restarting`.

    A sidecar restarts by exiting for its supervisor (systemd, pm2, `agentcom up`) to start it
    again: one that said in its hello that nothing supervises it would stop for good, so that
    is refused with `not_supervised`. Raises `agent_not_found`. Asking twice sends two
    `restart`s; a sidecar already restarting exits once.
    """
    agent = await get(s, agent_id)
    if agent.supervisor == "none":
        raise ConflictError(
            f"the sidecar of {agent_id} runs without a supervisor (started by hand): a restart "
            "would stop it for good; run it under systemd or pm2 (`agentcom sidecar "
            "install-service`), or restart it where it runs",
            code="not_supervised",
        )
    await messaging.publish(js, subjects.agent_inbox(agent_id), Restart())
    return agent
