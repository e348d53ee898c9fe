"""The record of backup attempts in Postgres (`ops.backups`): one row per attempt, ok or failed.

Why here: the backups are files under the CLI's home, which a dashboard on another machine (or
in another pod) cannot see, and no service may import another. So the record is a small schema
of the common library, as `auth` is: `agentcom backup` (libs/cli) writes a row after each
attempt, the dashboard reads the newest ones for its snapshot and its `backup_stale` and
`backup_failed` rules, and both only import `agentcom_common`. Whoever touches it first
migrates it (`migrate`, under the per-schema advisory lock), so neither needs the other running.

The `ops` schema is deliberately not in the dumps (`agentcom_cli.dumps.SCHEMAS`): it is the
history of the files, not data, so a restore keeps the record of the backups taken since,
instead of rolling it back to the dump's moment.

Errors are stored sanitized (`sanitize`): a libpq message may quote a connection string, and
this table is readable by every viewer of the dashboard.
"""

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Identity,
    Index,
    MetaData,
    Table,
    Text,
    insert,
    select,
)
from sqlalchemy.ext.asyncio import AsyncEngine

SCHEMA: Final = "ops"
MIGRATIONS: Final = Path(__file__).parent / "ops_migrations"
ERROR_LIMIT: Final = 2000

metadata = MetaData(schema=SCHEMA)
attempts = Table(
    "backups",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("file", Text),
    Column("size", BigInteger),
    Column("error", Text),
    Column("host", Text, nullable=False),  # `hostname:home`: which machine's files
)
# the newest attempt and the newest good one are both read by finished_at
Index("backups_finished", attempts.c.finished_at)
Index("backups_ok_finished", attempts.c.finished_at, postgresql_where=attempts.c.ok)


@dataclass(frozen=True, slots=True)
class Attempt:
    started_at: datetime
    finished_at: datetime
    ok: bool
    host: str
    file: str | None = None
    size: int | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "ok": self.ok,
            "host": self.host,
            "file": self.file,
            "size": self.size,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Attempt":
        return cls(
            started_at=datetime.fromisoformat(str(data["started_at"])),
            finished_at=datetime.fromisoformat(str(data["finished_at"])),
            ok=bool(data["ok"]),
            host=str(data["host"]),
            file=None if data.get("file") is None else str(data["file"]),
            size=None if data.get("size") is None else int(data["size"]),
            error=None if data.get("error") is None else str(data["error"]),
        )


@dataclass(frozen=True, slots=True)
class Summary:
    """The newest attempt (ok or not) and the newest good one; None where there is none."""

    last: Attempt | None
    last_ok: Attempt | None

    def as_json(self, now: datetime) -> dict[str, Any]:
        age = None if self.last_ok is None else (now - self.last_ok.finished_at).total_seconds()
        return {
            "last": None if self.last is None else self.last.as_json(),
            "last_ok": None if self.last_ok is None else self.last_ok.as_json(),
            "last_ok_age_s": None if age is None else round(age, 1),
        }


# `scheme://user:password@`, `password=...` (keyword DSNs), `PGPASSWORD=...`
_CREDENTIALS: Final = (
    (re.compile(r"([a-z][a-z0-9+.-]*://)[^\s/@]*@", re.IGNORECASE), r"\1***@"),
    (re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE), r"\1***"),
)


def sanitize(text: str, *secrets: str | None) -> str:
    """`text` without credentials: each of `secrets` (a password) and anything shaped like
    one (a URL's `user:password@`, a `password=` pair) is masked; cut to ERROR_LIMIT."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    for pattern, masked in _CREDENTIALS:
        text = pattern.sub(masked, text)
    return text[:ERROR_LIMIT]


async def migrate(engine: AsyncEngine) -> None:
    from agentcom_common import migrations  # Alembic: only for the writer, not `agentcom status`

    await migrations.upgrade(engine, MIGRATIONS, SCHEMA)


async def record(engine: AsyncEngine, *made: Attempt) -> None:
    """Store the attempts in one transaction (their errors sanitized once more)."""
    if not made:
        return
    rows = [
        {
            "started_at": a.started_at,
            "finished_at": a.finished_at,
            "ok": a.ok,
            "host": a.host,
            "file": a.file,
            "size": a.size,
            "error": None if a.error is None else sanitize(a.error),
        }
        for a in made
    ]
    async with engine.begin() as conn:
        await conn.execute(insert(attempts), rows)


def _attempt(row: Any) -> Attempt:
    return Attempt(
        started_at=row.started_at,
        finished_at=row.finished_at,
        ok=row.ok,
        host=row.host,
        file=row.file,
        size=row.size,
        error=row.error,
    )


async def latest(engine: AsyncEngine) -> Summary:
    """The newest attempt and the newest good one (two index reads)."""
    newest = select(attempts).order_by(attempts.c.finished_at.desc(), attempts.c.id.desc())
    async with engine.connect() as conn:
        last = (await conn.execute(newest.limit(1))).first()
        good = (await conn.execute(newest.where(attempts.c.ok).limit(1))).first()
    return Summary(
        None if last is None else _attempt(last), None if good is None else _attempt(good)
    )
