"""Per-agent NATS users: the auth callout admits an agent with exactly its own permissions."""

import asyncio
import json
from typing import Any

import httpx
import nats
import pytest
from nats.aio.client import Client
from nats.errors import Error as NatsError, TimeoutError as NatsTimeout

from agentcom_common import subjects
from agentcom_common.contracts.agent import Assign
from agentcom_common.testing import NatsServer, eventually, nats_login_refused, task_view


class Agent:
    """A sidecar's NATS connection made from the credentials `agent add` hands out."""

    def __init__(self, nc: Client, errors: list[str], agent_id: str) -> None:
        self.nc = nc
        self.errors = errors
        self.id = agent_id

    @classmethod
    async def login(cls, address: str, made: dict[str, Any]) -> "Agent":
        errors: list[str] = []

        async def on_error(exc: Exception) -> None:
            errors.append(str(exc))

        nc = await nats.connect(  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
            address,
            user=made["nats_user"],
            password=made["nats_password"],
            inbox_prefix=subjects.agent_reply_prefix(made["id"]),
            allow_reconnect=False,
            error_cb=on_error,
        )
        return cls(nc, errors, made["id"])


async def test_an_agent_reads_its_own_inbox_and_reports_but_never_touches_anothers(
    api: httpx.AsyncClient, nats_server: NatsServer, js: Any
) -> None:
    made_a = (await api.post("/api/agents", json={"name": "a"})).json()
    made_b = (await api.post("/api/agents", json={"name": "b"})).json()
    a = await Agent.login(nats_server.address, made_a)
    try:
        a_js = a.nc.jetstream()  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
        # its own: report (acked by JetStream), pull its inbox consumer, ack
        ack = await a_js.publish(subjects.agent_report("a"), b'{"kind":"heartbeat","agent_id":"a"}')
        assert ack.stream == subjects.REPORTS_STREAM
        await js.publish(
            subjects.agent_inbox("a"),
            Assign(task=task_view(), generation=1).model_dump_json().encode(),
        )
        sub = await a_js.pull_subscribe(
            subjects.agent_inbox("a"), durable=subjects.agent_consumer("a"), stream="INBOX"
        )
        [msg] = await sub.fetch(1, timeout=5)
        await msg.ack()
        assert json.loads(msg.data)["kind"] == "assign"

        # B's: the server refuses the subscription and drops the forged report
        await a.nc.subscribe(subjects.agent_inbox("b"))  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
        await a.nc.flush()
        with pytest.raises(NatsTimeout):
            await a_js.publish(
                subjects.agent_report("b"), b'{"kind":"hello","agent_id":"b"}', timeout=1
            )
        with pytest.raises(NatsError):
            await a_js.pull_subscribe(
                subjects.agent_inbox("b"), durable=subjects.agent_consumer("b"), stream="INBOX"
            )

        async def both_refused() -> None:
            text = " ".join(a.errors)
            assert 'subscription to "agentcom.agent.b.inbox"' in text
            assert 'publish to "agentcom.agent.b.report"' in text

        await eventually(both_refused)
        stored = await js.stream_info(subjects.REPORTS_STREAM, subjects_filter=">")
        assert subjects.agent_report("b") not in (stored.state.subjects or {})
        assert made_b["nats_password"] != made_a["nats_password"]
    finally:
        await a.nc.close()


async def test_a_wrong_or_unknown_login_is_refused(
    api: httpx.AsyncClient, nats_server: NatsServer
) -> None:
    made = (await api.post("/api/agents", json={"name": "c"})).json()

    assert "Authorization Violation" in await nats_login_refused(nats_server.address, "c", "guess")
    assert "Authorization Violation" in await nats_login_refused(
        nats_server.address, "nobody", made["nats_password"]
    )
    assert "Authorization Violation" in await nats_login_refused(nats_server.address, "b", "")


async def test_remove_closes_the_open_connection_and_refuses_the_next_login(
    api: httpx.AsyncClient, nats_server: NatsServer
) -> None:
    made = (await api.post("/api/agents", json={"name": "d"})).json()
    d = await Agent.login(nats_server.address, made)

    assert (await api.delete("/api/agents/d")).status_code == 200

    async def closed() -> None:
        assert d.nc.is_closed

    await eventually(closed)
    assert "Authorization Violation" in await nats_login_refused(
        nats_server.address, "d", made["nats_password"]
    )


async def test_rotation_gives_new_credentials_and_the_old_ones_stop_at_once(
    api: httpx.AsyncClient, nats_server: NatsServer
) -> None:
    old = (await api.post("/api/agents", json={"name": "e"})).json()
    e = await Agent.login(nats_server.address, old)

    rotated = await api.post("/api/agents/e/rotate")

    assert rotated.status_code == 200, rotated.text
    new = rotated.json()
    assert new["token"] != old["token"]
    assert new["nats_password"] != old["nats_password"]

    async def closed() -> None:
        assert e.nc.is_closed

    await eventually(closed)
    assert "Authorization Violation" in await nats_login_refused(
        nats_server.address, "e", old["nats_password"]
    )
    again = await Agent.login(nats_server.address, new)
    await again.nc.close()
    old_bearer = {"Authorization": f"Bearer {old['token']}"}
    assert (await api.get("/api/whoami", headers=old_bearer)).status_code == 401
    new_bearer = {"Authorization": f"Bearer {new['token']}"}
    assert (await api.get("/api/whoami", headers=new_bearer)).json()["role"] == "agent"
    assert (await api.post("/api/agents/nobody/rotate")).json()["error"] == "agent_not_found"


async def test_services_connect_as_the_hub_and_anonymous_logins_are_refused(
    nats_server: NatsServer,
) -> None:
    hub = await nats.connect(nats_server.url)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
    await hub.close()
    assert "Authorization Violation" in await asyncio.wait_for(
        nats_login_refused(nats_server.address), timeout=10
    )
