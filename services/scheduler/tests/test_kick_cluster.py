"""Kicking an agent's NATS connections on a NATS cluster: every node's connections go.

The scheduler's system login sits on node 1; the agent's sidecar connects to node 2, which
answers CONNZ and KICK for its own connections only.
"""

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from agentcom_common import natsauth, subjects
from agentcom_common.testing import (
    NatsServer,
    eventually,
    nats_login_refused,
    start_nats_cluster,
)
from agentcom_scheduler import credentials
from agentcom_scheduler.settings import SchedulerSettings


class Agent:
    """A sidecar's NATS connection made from the credentials `agent add` hands out."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc

    @classmethod
    async def login(cls, address: str, made: dict[str, Any]) -> "Agent":
        nc = await nats.connect(  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
            address,
            user=made["nats_user"],
            password=made["nats_password"],
            inbox_prefix=subjects.agent_reply_prefix(made["id"]),
            allow_reconnect=False,
        )
        return cls(nc)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[NatsServer]]:
    nodes = start_nats_cluster(tmp_path / "cluster", size=2)
    try:
        yield nodes
    finally:
        for node in nodes:
            node.stop()


@pytest.fixture
def nats_server(cluster: list[NatsServer]) -> NatsServer:
    """Node 1: what the services (and so the scheduler's system login) connect to."""
    return cluster[0]


@pytest.fixture
def node2(cluster: list[NatsServer]) -> NatsServer:
    return cluster[1]


async def test_remove_closes_a_connection_on_another_node_and_refuses_the_next_login(
    api: httpx.AsyncClient, nats_server: NatsServer, node2: NatsServer
) -> None:
    made = (await api.post("/api/agents", json={"name": "far"})).json()
    far = await Agent.login(node2.address, made)  # admitted by the callout on node 1
    assert far.nc.connected_url is not None
    assert far.nc.connected_url.port == int(node2.address.rsplit(":", 1)[1])
    # one on node 1 too: whichever server answers CONNZ first, one reply is not enough
    near = await Agent.login(nats_server.address, made)

    assert (await api.delete("/api/agents/far")).status_code == 200

    async def closed() -> None:
        assert (far.nc.is_closed, near.nc.is_closed) == (True, True)

    await eventually(closed)
    for node in (node2, nats_server):
        assert "Authorization Violation" in await nats_login_refused(
            node.address, "far", made["nats_password"]
        )


async def test_rotate_kicks_every_connection_on_every_node(
    api: httpx.AsyncClient, nats_server: NatsServer, node2: NatsServer
) -> None:
    old = (await api.post("/api/agents", json={"name": "twice"})).json()
    here = await Agent.login(nats_server.address, old)
    there = await Agent.login(node2.address, old)

    assert (await api.post("/api/agents/twice/rotate")).status_code == 200

    async def both_closed() -> None:
        assert (here.nc.is_closed, there.nc.is_closed) == (True, True)

    await eventually(both_closed)


async def test_a_validation_cooldown_kicks_on_every_node(
    api: httpx.AsyncClient, nats_server: NatsServer, node2: NatsServer, js: JetStreamContext
) -> None:
    made = (await api.post("/api/agents", json={"name": "noisy"})).json()
    here = await Agent.login(nats_server.address, made)
    there = await Agent.login(node2.address, made)
    limit = SchedulerSettings().scheduler_validation_limit
    for _ in range(limit):
        await js.publish(subjects.agent_report("noisy"), b'{"kind": "nonsense"}')

    async def both_closed() -> None:
        assert (here.nc.is_closed, there.nc.is_closed) == (True, True)

    await eventually(both_closed)
    assert "Authorization Violation" in await nats_login_refused(
        node2.address, "noisy", made["nats_password"]
    )


async def test_kick_pages_through_connz_and_leaves_other_agents_alone(
    api: httpx.AsyncClient,
    nats_server: NatsServer,
    node2: NatsServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    made = (await api.post("/api/agents", json={"name": "many"})).json()
    other = (await api.post("/api/agents", json={"name": "bystander"})).json()
    conns = [await Agent.login(node2.address, made) for _ in range(3)]
    conns.append(await Agent.login(nats_server.address, made))
    bystanders = [await Agent.login(n.address, other) for n in (nats_server, node2)]
    # page size 1: node 2 holds 3 of the agent's connections, so CONNZ must be paged
    callout = credentials.Callout(
        None,  # pyright: ignore[reportArgumentType]  # kick never reads the database
        None,  # pyright: ignore[reportArgumentType]  # nor the hub connection
        nats_server.url,
        nats_server.auth.issuer_seed,
        connz_page=1,
    )
    try:
        with caplog.at_level(logging.INFO, logger="agentcom_scheduler.credentials"):
            assert await callout.kick("many") == 4
    finally:
        await callout.close()

    async def all_closed() -> None:
        assert [c.nc.is_closed for c in conns] == [True] * 4

    await eventually(all_closed)
    assert [b.nc.is_closed for b in bystanders] == [False, False]
    assert "nats_login.kicked" in caplog.text
    assert made["nats_password"] not in caplog.text
    for b in bystanders:
        await b.nc.close()


async def test_a_kick_the_server_refuses_is_logged_and_not_counted(
    api: httpx.AsyncClient,
    nats_server: NatsServer,
    node2: NatsServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    made = (await api.post("/api/agents", json={"name": "gone"})).json()
    gone = await Agent.login(node2.address, made)
    seed = nats_server.auth.issuer_seed
    system = await nats.connect(  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
        natsauth.with_credentials(
            node2.address, natsauth.SYSTEM_USER, natsauth.system_password(seed)
        )
    )
    callout = credentials.Callout(
        None,  # pyright: ignore[reportArgumentType]  # kicking never reads the database
        None,  # pyright: ignore[reportArgumentType]  # nor the hub connection
        nats_server.url,
        seed,
    )
    ask = json.dumps({"user": "gone", "acc": natsauth.ACCOUNT, "server_name": "node2"}).encode()
    try:
        stale = await system.request(credentials.CONNZ_ALL, ask, timeout=5)
        [listed] = json.loads(stale.data)["data"]["connections"]
        stale_cid = listed["cid"]
        await gone.nc.close()  # gone between CONNZ and KICK: node 2 refuses the kick

        async def left() -> None:
            now = await system.request(credentials.CONNZ_ALL, ask, timeout=5)
            assert json.loads(now.data)["data"]["connections"] in (None, [])

        await eventually(left)
        with caplog.at_level(logging.WARNING, logger="agentcom_scheduler.credentials"):
            assert await callout.kick_on_server(system, "gone", stale.data) == 0
    finally:
        await callout.close()
        await system.close()
    [record] = [r for r in caplog.records if r.getMessage() == "nats_login.kick_error"]
    server = json.loads(stale.data)["server"]["id"]
    fields = {k: getattr(record, k, None) for k in ("agent_id", "server", "cid")}
    assert fields == {"agent_id": "gone", "server": server, "cid": stale_cid}
    assert "no such client" in str(getattr(record, "error", ""))  # the server's own words
