"""`agentcom_cli.dumps` against a real Postgres (a migrated database of every service)."""

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_cli import dumps
from agentcom_common import auth
from agentcom_common.errors import ConflictError, InvalidError
from agentcom_common.testing import eventually


async def _token_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT name FROM auth.tokens"))
        return {row[0] for row in rows}


async def test_a_restore_brings_back_what_the_dump_held_and_drops_what_came_later(
    db_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    await auth.issue(engine, auth.Role.VIEWER, "before the backup")
    dump = await dumps.take(db_url, tmp_path, keep=3)
    await auth.issue(engine, auth.Role.VIEWER, "after the backup")
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM auth.tokens WHERE name = 'before the backup'"))
    await engine.dispose()  # a restore wants the database to itself

    assert await dumps.check(dump.path) == list(dumps.SCHEMAS)
    assert await dumps.restore(dump.path, db_url) == list(dumps.SCHEMAS)

    names = await _token_names(engine)
    assert "before the backup" in names
    assert "after the backup" not in names


async def test_a_restore_that_fails_halfway_leaves_the_database_as_it_was(
    db_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    dump = await dumps.take(db_url, tmp_path, keep=3)
    await auth.issue(engine, auth.Role.VIEWER, "still here")  # a dropped schema would lose it
    async with engine.begin() as conn:
        # the restore dies after dropping the schemas and loading the data: at its indexes
        await conn.execute(
            text(
                "CREATE FUNCTION public.refuse() RETURNS event_trigger LANGUAGE plpgsql AS "
                "$$BEGIN RAISE EXCEPTION 'no indexes today'; END$$"
            )
        )
        await conn.execute(
            text(
                "CREATE EVENT TRIGGER refuse ON ddl_command_start WHEN TAG IN ('CREATE INDEX') "
                "EXECUTE FUNCTION public.refuse()"
            )
        )
    await engine.dispose()

    with pytest.raises(dumps.BackupError, match="no indexes today"):
        await dumps.restore(dump.path, db_url)

    assert "still here" in await _token_names(engine)


async def test_a_file_that_is_no_dump_is_refused_naming_it(tmp_path: Path) -> None:
    junk = tmp_path / "junk.dump"
    junk.write_bytes(b"PGDMP? no")

    with pytest.raises(InvalidError, match="not a readable pg_dump archive"):
        await dumps.check(junk)
    with pytest.raises(InvalidError, match="no such file"):
        await dumps.check(tmp_path / "missing.dump")


async def test_a_restore_is_refused_while_another_session_uses_the_database(
    db_url: str, engine: AsyncEngine
) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
        with pytest.raises(ConflictError, match="stop the stack first"):
            await dumps.refuse_if_in_use(db_url)
    await engine.dispose()
    await dumps.refuse_if_in_use(db_url)


async def test_only_the_newest_are_kept_and_no_partial_file_counts(
    db_url: str, tmp_path: Path
) -> None:
    (tmp_path / "backups").mkdir()
    (tmp_path / "backups" / ".agentcom-20200101T000000.000000Z.dump.partial").write_bytes(b"x")
    made = [await dumps.take(db_url, tmp_path, keep=2) for _ in range(3)]

    assert [d.path for d in dumps.listed(tmp_path)] == [made[2].path, made[1].path]
    assert not made[0].path.exists()
    last: Any = dumps.last_result(tmp_path)
    assert last["ok"]
    assert last["file"] == str(made[2].path)


async def test_a_failed_backup_is_recorded_and_makes_the_backups_unhealthy(
    tmp_path: Path,
) -> None:
    gone = f"postgresql://postgres@/agentcom?host={tmp_path}&port=1"
    with pytest.raises(dumps.BackupError, match="pg_dump failed"):
        await dumps.take(gone, tmp_path, keep=3)

    assert dumps.listed(tmp_path) == []
    ok, detail = dumps.health(tmp_path, timedelta(hours=1))
    assert not ok
    assert "the last backup failed" in detail


async def test_the_schedule_backs_up_at_once_when_there_is_none_then_every_interval(
    db_url: str, tmp_path: Path
) -> None:
    told: list[str] = []
    loop = asyncio.create_task(
        dumps.scheduled(db_url, tmp_path, timedelta(milliseconds=300), 3, told.append)
    )
    try:

        async def two_taken() -> None:
            assert len(dumps.listed(tmp_path)) >= 2

        await eventually(two_taken, timeout=20)
    finally:
        loop.cancel()
        await asyncio.wait({loop})
    assert told == []
    assert dumps.health(tmp_path, timedelta(hours=1))[0]
    stale, detail = dumps.health(tmp_path, timedelta(microseconds=1))
    assert not stale
    assert "stale" in detail
