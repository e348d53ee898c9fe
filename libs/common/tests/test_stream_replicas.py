"""On a 3-node NATS cluster (the documented production shape) the streams are made with
`nats_stream_replicas` copies, so each survives the loss of a node."""

from pathlib import Path

from nats.aio.client import Client

from agentcom_common import messaging, subjects
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import start_nats_cluster


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
