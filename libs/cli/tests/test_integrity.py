"""`agentcom doctor --deep`'s checks against a real Postgres (every service's schema) and NATS."""

from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_cli import integrity
from agentcom_cli.doctor import Finding
from agentcom_common.testing import NatsServer


def _by_check(found: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in found}


async def test_a_healthy_database_passes_every_check(db_url: str) -> None:
    found = _by_check(await integrity.database(db_url))

    assert all(f.ok for f in found.values()), [f for f in found.values() if not f.ok]
    assert "intact" in found["amcheck"].detail
    assert {"outbox queue", "outbox scheduler", "tasks held by unknown agents"} <= set(found)


async def test_orphans_and_an_old_outbox_backlog_are_named_with_a_fix(
    db_url: str, engine: AsyncEngine
) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO queue.tasks (id, state, lane, description, max_retries, assigned_to,"
                " needed_capabilities, file_hints, success_criteria, verification_steps,"
                " complexity, depends_on, metadata, submitted_by) VALUES ('task-ghostly',"
                " 'assigned', 2, 'held by nobody', 3, 'ghost', '{}', '[]', '[]', '[]', '{}',"
                " '{}', '{}', 'test')"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO queue.outbox (subject, payload, headers, created_at)"
                " VALUES ('agentcom.evt.test', '\\x00', '{}', now() - interval '2 minutes')"
            )
        )
    await engine.dispose()

    found = _by_check(await integrity.database(db_url))

    orphan = found["tasks held by unknown agents"]
    assert not orphan.ok
    assert orphan.detail == "task-ghostly"
    assert "agentcom task cancel" in orphan.fix
    backlog = found["outbox queue"]
    assert not backlog.ok
    assert backlog.detail.startswith("1 events waiting, the oldest for 0:02:")
    assert found["outbox scheduler"].ok


async def test_a_consumer_with_messages_and_no_delivery_is_stuck(
    nats_server: NatsServer, js: JetStreamContext
) -> None:
    assert (await integrity.consumers(nats_server.url))[0].ok
    await js.publish("agentcom.evt.task.submitted", b"{}")
    await js.add_consumer("EVENTS", ConsumerConfig(durable_name="nobody-pulls"))  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed

    stuck = (await integrity.consumers(nats_server.url))[0]

    assert not stuck.ok
    assert "EVENTS/nobody-pulls (1 waiting)" in stuck.detail
