import asyncio
import importlib.util
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import pytest
from nats.js import JetStreamContext
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import outbox, subjects
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import eventually

CHILD = Path(__file__).with_name("outbox_child.py")


def _load_child() -> ModuleType:
    spec = importlib.util.spec_from_file_location("outbox_child", CHILD)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


child = _load_child()


@pytest.fixture
async def schema(engine: AsyncEngine) -> AsyncEngine:
    async with engine.begin() as conn:
        await conn.execute(text(f"CREATE SCHEMA {child.SCHEMA}"))
        await conn.run_sync(child.metadata.create_all)
    return engine


@pytest.fixture
async def relay(
    schema: AsyncEngine, js: JetStreamContext, settings: CommonSettings
) -> AsyncIterator[outbox.Relay]:
    made = outbox.Relay(
        schema, js, child.table, interval=settings.outbox_interval, batch=settings.outbox_batch
    )
    task = asyncio.create_task(made.run())
    yield made
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _stream_messages(js: JetStreamContext) -> int:
    return (await js.stream_info(subjects.EVENTS_STREAM)).state.messages


async def _outbox_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(child.table))).scalar_one()


async def _commit_event(engine: AsyncEngine, name: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(child.items.insert().values(name=name))
        await outbox.add(conn, child.table, child.SUBJECT, child.EVENT)


async def test_committed_event_is_published_with_its_row_id(
    relay: outbox.Relay, js: JetStreamContext
) -> None:
    sub = await js.subscribe(child.SUBJECT)
    await _commit_event(relay.engine, "one")

    msg = await sub.next_msg(timeout=10)

    assert msg.headers is not None
    assert msg.headers["Nats-Msg-Id"].startswith(f"{child.SCHEMA}.outbox.")
    assert child.EVENT.model_validate_json(msg.data) == child.EVENT

    async def forgotten() -> None:  # the relay deletes the row after the ack: a moment later
        assert await _outbox_rows(relay.engine) == 0

    await eventually(forgotten)


async def test_rolled_back_transaction_publishes_nothing(
    relay: outbox.Relay, js: JetStreamContext
) -> None:
    async def change_then_fail() -> None:
        async with relay.engine.begin() as conn:
            await conn.execute(child.items.insert().values(name="rolled-back"))
            await outbox.add(conn, child.table, child.SUBJECT, child.EVENT)
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError, match="abort"):
        await change_then_fail()
    await _commit_event(relay.engine, "marker")  # a later event proves the relay has run since

    async def only_the_marker_arrived() -> None:
        assert await _outbox_rows(relay.engine) == 0
        assert await _stream_messages(js) == 1

    await eventually(only_the_marker_arrived)
    async with relay.engine.connect() as conn:
        names = (await conn.execute(select(child.items.c.name))).scalars().all()
    assert names == ["marker"]


def _run_child_until_killed(settings: CommonSettings, mode: str) -> None:
    assert settings.database_url is not None
    result = subprocess.run(
        [
            sys.executable,
            str(CHILD),
            settings.database_url.get_secret_value(),
            settings.nats_url or "",
            mode,
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == -9, result.stderr.decode()


@pytest.mark.parametrize("mode", ["commit", "publish"])
async def test_process_killed_mid_relay_loses_and_duplicates_nothing(
    schema: AsyncEngine, js: JetStreamContext, settings: CommonSettings, mode: str
) -> None:
    await asyncio.to_thread(_run_child_until_killed, settings, mode)
    assert await _outbox_rows(schema) == 1  # the child died before deleting its row
    published_before_restart = await _stream_messages(js)
    assert published_before_restart == (1 if mode == "publish" else 0)

    restarted = outbox.Relay(schema, js, child.table, interval=settings.outbox_interval, batch=10)
    assert await restarted.relay_once() == 1

    assert await _outbox_rows(schema) == 0
    assert await _stream_messages(js) == 1  # published exactly once: Nats-Msg-Id deduplicated
    sub = await js.subscribe(child.SUBJECT, deliver_policy=None)
    msg = await sub.next_msg(timeout=10)
    assert child.EVENT.model_validate_json(msg.data) == child.EVENT


async def test_relay_keeps_rows_while_nats_is_down(
    schema: AsyncEngine, js: JetStreamContext, settings: CommonSettings
) -> None:
    await _commit_event(schema, "waiting")
    relay = outbox.Relay(schema, js, child.table, interval=settings.outbox_interval, batch=10)
    await js._nc.close()  # pyright: ignore[reportPrivateUsage]  # the relay's own connection drops

    with pytest.raises(Exception):  # noqa: B017, PT011 - any publish failure will do
        await relay.relay_once()

    assert await _outbox_rows(schema) == 1


async def test_the_relay_vacuums_its_outbox_after_enough_rows(
    schema: AsyncEngine, js: JetStreamContext, settings: CommonSettings
) -> None:
    relay = outbox.Relay(
        schema, js, child.table, interval=settings.outbox_interval, batch=10, vacuum_every=3
    )
    for name in ("one", "two", "three"):
        await _commit_event(schema, name)

    assert await relay.relay_once() == 3

    async def vacuumed() -> None:
        async with schema.connect() as conn:
            count = await conn.execute(
                text(
                    "SELECT vacuum_count FROM pg_stat_user_tables "
                    "WHERE schemaname = :schema AND relname = :table"
                ),
                {"schema": child.SCHEMA, "table": child.table.name},
            )
            assert count.scalar_one() >= 1

    await eventually(vacuumed)


async def test_a_message_no_stream_takes_fails_its_batch_and_the_rows_stay(
    schema: AsyncEngine, js: JetStreamContext, settings: CommonSettings
) -> None:
    await _commit_event(schema, "good")
    async with schema.begin() as conn:  # a subject outside every stream: no PubAck comes
        await outbox.add(conn, child.table, "outbox_test.nowhere", child.EVENT)
    relay = outbox.Relay(schema, js, child.table, interval=settings.outbox_interval, batch=10)

    with pytest.raises(outbox.PublishError):
        await relay.relay_once()

    assert await _outbox_rows(schema) == 2


async def test_a_wake_up_after_a_quiet_spell_is_relayed_without_the_linger(
    schema: AsyncEngine, js: JetStreamContext
) -> None:
    # linger and sweep far longer than the test's deadline: only an immediate pass gets the
    # event out in time, so a relay that always lingers after a wake-up fails this test
    relay = outbox.Relay(
        schema, js, child.table, interval=timedelta(hours=1), batch=10, linger=timedelta(hours=1)
    )
    task = asyncio.create_task(relay.run())
    try:
        sub = await js.subscribe(child.SUBJECT)
        await _commit_event(schema, "lone")  # the NOTIFY of `outbox.add` wakes the relay

        msg = await sub.next_msg(timeout=10)

        assert child.EVENT.model_validate_json(msg.data) == child.EVENT
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_while_commits_keep_coming_passes_start_one_linger_apart(
    schema: AsyncEngine, js: JetStreamContext
) -> None:
    relay = outbox.Relay(
        schema,
        js,
        child.table,
        interval=timedelta(seconds=1),
        batch=10,
        linger=timedelta(milliseconds=500),
    )
    assert relay.linger_after_wake(now=100.0) == 0.0  # nothing relayed yet: quiet

    relay._pass_started, relay._last_sent = 100.0, 3  # pyright: ignore[reportPrivateUsage]
    assert relay.linger_after_wake(now=100.1) == pytest.approx(0.4)
    assert relay.linger_after_wake(now=100.7) == 0.0  # the pass already began a linger ago

    relay._last_sent = 0  # pyright: ignore[reportPrivateUsage]  # the last pass found nothing
    assert relay.linger_after_wake(now=100.1) == 0.0
