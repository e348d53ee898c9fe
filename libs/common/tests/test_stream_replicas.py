"""On a 3-node NATS cluster (the documented production shape) the streams are made with
`nats_stream_replicas` copies, so each survives the loss of a node; a service connected to a
node that dies goes on through another."""

from datetime import timedelta
from pathlib import Path

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from agentcom_common import messaging, natsauth, subjects
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import eventually, start_nats_cluster


async def test_streams_get_three_replicas_on_a_three_node_cluster(tmp_path: Path) -> None:
    nodes = start_nats_cluster(tmp_path / "cluster", size=3)
    nc = Client()
    try:
        settings = CommonSettings(nats_url=nodes[0].url, nats_stream_replicas=3)
        await nc.connect(nodes[0].url)
        js = nc.jetstream()  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
        await messaging.ensure_streams(js, settings)
        await messaging.ensure_streams(js, settings)  # a second replica starting: no change
        for name in (subjects.EVENTS_STREAM, subjects.INBOX_STREAM, subjects.REPORTS_STREAM):
            info = await js.stream_info(name)
            assert info.config.num_replicas == 3
            assert info.cluster is not None
            assert len(info.cluster.replicas or []) == 2  # the leader and two more copies
    finally:
        await nc.close()
        for node in nodes:
            node.stop()


def test_one_replica_by_default() -> None:
    assert {c.num_replicas for c in messaging.stream_configs(CommonSettings())} == {1}


async def test_a_service_whose_node_dies_goes_on_through_another(tmp_path: Path) -> None:
    """The hub URL names the cluster's nodes, with its credentials on the first only: they
    are the login for every node (nats-py alone sent them to the first, and the others refused
    the service until the first came back)."""
    nodes = start_nats_cluster(tmp_path / "cluster", size=2)
    url = ",".join([nodes[0].url, nodes[1].address])
    settings = CommonSettings(nats_url=url, nats_reconnect_wait=timedelta(milliseconds=50))
    service = await messaging.connect(settings, "agentcom-test", deadline=10)
    other = Client()

    async def echo(msg: Msg) -> None:
        await msg.respond(b"ok")

    try:
        on = service.connected_url
        assert on is not None
        dying = next(n for n in nodes if n.address.endswith(f":{on.port}"))
        await other.connect(next(n for n in nodes if n is not dying).url)
        await other.subscribe("agentcom.test.echo", cb=echo)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
        await other.flush()
        dying.process.kill()
        dying.process.wait()

        async def through_the_other() -> None:
            try:
                reply = await service.request("agentcom.test.echo", b"", timeout=1)
            except NatsError as exc:
                raise AssertionError(repr(exc)) from None
            assert reply.data == b"ok"

        await eventually(through_the_other, timeout=20)
        assert service.connected_url is not None
        assert service.connected_url.port != on.port
    finally:
        await service.close()
        await other.close()
        for node in nodes:
            node.stop()


def test_a_cluster_url_is_one_login_for_every_node() -> None:
    login = natsauth.login_of("nats://hub:p%40ss@10.0.0.1:4222, nats://10.0.0.2:4222,10.0.0.3")
    assert login.servers == ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222", "nats://10.0.0.3"]
    assert (login.user, login.password) == ("hub", "p@ss")
    assert natsauth.login_of("nats://127.0.0.1:4222") == natsauth.Login(["nats://127.0.0.1:4222"])
    assert natsauth.redact("nats://hub:pw@a:1,nats://b:2") == "nats://***@a:1,nats://b:2"
