"""Run as a child process by test_outbox.py, which kills it at a chosen point.

argv: database URL, NATS URL, mode. Modes:
- `commit`: commit a change with its outbox row, then die before any relay runs.
- `publish`: commit, publish the row as the relay would, then die before the delete commits.
"""

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime

import nats
from pydantic import SecretStr
from sqlalchemy import Column, Integer, MetaData, Table, Text

from agentcom_common import db, outbox
from agentcom_common.contracts.system import ServiceStarted
from agentcom_common.settings import CommonSettings

# a throwaway schema: one business table and its outbox; test_outbox.py imports these too
SCHEMA = "outbox_test"
SUBJECT = "agentcom.evt.system.service_started"
EVENT = ServiceStarted(
    service="outbox-test", version="1", instance="test", started_at=datetime(2026, 1, 1, tzinfo=UTC)
)
metadata = MetaData(schema=SCHEMA)
items = Table("items", metadata, Column("id", Integer, primary_key=True), Column("name", Text))
table = outbox.define_table(metadata)


async def main(database_url: str, nats_url: str, mode: str) -> None:
    engine = db.create_engine(CommonSettings(database_url=SecretStr(database_url)))
    async with engine.begin() as conn:
        await conn.execute(items.insert().values(name="from-child"))
        await outbox.add(conn, table, SUBJECT, EVENT)
    if mode == "publish":
        nc = await nats.connect(nats_url)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
        async with engine.begin() as conn:
            rows = await outbox.claim_batch(conn, table, 10)
            await outbox.publish_rows(nc.jetstream(), table, rows)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
            await nc.flush()
            os.kill(os.getpid(), signal.SIGKILL)  # published, delete not committed
    os.kill(os.getpid(), signal.SIGKILL)  # committed, never relayed


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
