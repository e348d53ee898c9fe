"""Every `agentcom backup` attempt, ok or failed, is recorded in Postgres (`ops.backups`),
and `agentcom status` tells its age and result. The real command, against a real Postgres."""

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agentcom_cli import dumps, status
from agentcom_common import backups, db
from agentcom_common.settings import CommonSettings
from up_stack import cli, cli_env


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    made = create_async_engine(db.async_url(db_url))
    yield made
    await made.dispose()


async def rows(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        found = await conn.execute(text("SELECT * FROM ops.backups ORDER BY id"))
        return [dict(row._mapping) for row in found]  # pyright: ignore[reportPrivateUsage]


def status_of_backups(env: dict[str, str]) -> dict[str, Any]:
    done = cli(env, "status", "--json")  # exit 1: no service runs here, only Postgres
    parts = {p["part"]: p for p in json.loads(done.stdout)["parts"]}
    return parts["backups"]


async def test_a_backup_is_recorded_with_its_file_and_size_and_status_shows_its_age(
    db_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    env = cli_env(tmp_path / "home", AGENTCOM_DATABASE_URL=db_url)
    # what `agentcom status` prints, in-process: a third command would double the test's time
    before = CommonSettings(home=tmp_path / "home", database_url=SecretStr(db_url))
    parts = {p.part: p for p in await status.collect(before)}
    assert parts["backups"].ok  # a fresh stack is not unhealthy before its first backup
    assert parts["backups"].detail == "none yet; run `agentcom backup`"

    done = cli(env, "backup", "--json")

    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout)
    assert made["recorded"] is True
    [row] = await rows(engine)
    assert row["ok"] is True
    assert row["error"] is None
    assert row["file"] == made["file"]
    [kept] = dumps.listed(tmp_path / "home")
    assert row["size"] == made["size"] == kept.size
    assert str(kept.path) == made["file"]
    assert row["started_at"] <= row["finished_at"]
    assert row["host"].endswith(f":{tmp_path / 'home'}")
    shown = status_of_backups(env)
    assert shown["ok"], shown
    assert shown["detail"].startswith("newest 0:00:"), shown


async def test_a_backup_that_cannot_write_its_file_is_recorded_as_failed(
    db_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "backups").write_text("a file where the backups directory belongs")
    env = cli_env(home, AGENTCOM_DATABASE_URL=db_url)

    done = cli(env, "backup")

    assert done.returncode == 1
    assert "cannot write the backup" in done.stderr
    [row] = await rows(engine)
    assert row["ok"] is False
    assert row["file"] is None
    assert "cannot write the backup" in row["error"]
    assert str(home / "backups") in row["error"]
    # no last.json can be kept in a file: Postgres has the only record, and status reads it
    shown = status_of_backups(env)
    assert not shown["ok"]
    assert "the last backup failed at" in shown["detail"]
    assert "cannot write the backup" in shown["detail"]


async def test_a_failure_postgres_missed_is_kept_and_recorded_by_the_next_backup(
    db_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    gone = "postgresql://agentcom:s3cret-pw@127.0.0.1:1/agentcom"
    failed = cli(cli_env(home, AGENTCOM_DATABASE_URL=gone), "backup")
    assert failed.returncode == 1
    assert "pg_dump failed" in failed.stderr
    assert "s3cret-pw" not in failed.stderr
    kept = (home / "backups" / dumps.UNRECORDED).read_text()
    assert "pg_dump failed" in kept
    assert "s3cret-pw" not in kept

    done = cli(cli_env(home, AGENTCOM_DATABASE_URL=db_url), "backup", "--json")

    assert done.returncode == 0, done.stderr
    first, second = await rows(engine)
    assert (first["ok"], second["ok"]) == (False, True)
    assert "pg_dump failed" in first["error"]
    assert "s3cret-pw" not in first["error"]
    assert first["finished_at"] <= second["started_at"]
    assert not (home / "backups" / dumps.UNRECORDED).exists()
    summary = await backups.latest(engine)
    assert summary.last == summary.last_ok
    assert summary.last_ok is not None
    assert summary.last_ok.file == json.loads(done.stdout)["file"]


def test_credentials_never_reach_the_record() -> None:
    said = (
        'pg_dump: error: connection to "postgresql://bob:hunter2@db:5432/x" failed; '
        "dsn host=db password=hunter2 user=bob; PGPASSWORD=hunter2"
    )

    clean = backups.sanitize(said, "hunter2")

    assert "hunter2" not in clean
    assert "bob:" not in clean
    assert "postgresql://***@db:5432/x" in clean
    assert len(backups.sanitize("x" * 10_000)) == backups.ERROR_LIMIT
