"""The consumer helper's start: a durable asked for while NATS does not answer is asked for
again until it does, so a consumer loop never ends on its first request."""

import asyncio
import logging
from pathlib import Path

import nats
import pytest
from nats.aio.msg import Msg

from agentcom_common import cancelling, consumer
from agentcom_common.testing import eventually, start_nats


async def test_a_consumer_asked_for_while_nats_is_away_reads_once_nats_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_nats(tmp_path / "js")
    port = int(server.address.rsplit(":", 1)[1])
    nc = await nats.connect(  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
        server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.1
    )
    js = nc.jetstream()  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
    await js.add_stream(name="LATE", subjects=["late.>"])  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed **params
    server.stop()
    got: list[bytes] = []

    async def handle(msg: Msg) -> None:
        got.append(msg.data)

    caplog.set_level(logging.WARNING, logger="agentcom_common.consumer")
    reading = asyncio.create_task(
        consumer.consume(js, "LATE", "late.>", "late", consumer.Policy(), handle)
    )
    back = None
    try:

        async def refused_once() -> None:
            assert not reading.done()  # the loop goes on
            assert any(r.getMessage() == "consumer.subscribe_failed" for r in caplog.records)

        await eventually(refused_once)
        back = start_nats(tmp_path / "js", port, server.auth)  # the same store: the stream too
        await js.publish("late.one", b"one")

        async def read() -> None:
            assert got == [b"one"]

        await eventually(read, timeout=30)
    finally:
        await cancelling.cancel_and_wait([reading], 5)
        await nc.close()
        if back is not None:
            back.stop()
