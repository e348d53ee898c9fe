"""The local crash journal (SQLite in the agent's state dir): assignments and outgoing reports.

Rules that make a `kill -9` at any point recoverable:
- An inbox message is acked only after its assignment row committed here.
- A task's phase change and the report it causes commit together (`advance`), so a restart
  finds either both or neither.
- A report row stays unsent until JetStream acked it; the courier re-sends it with the same
  `Nats-Msg-Id` (`<agent>-<seq>`), so a re-send after a crash is stored once.
- A task is *open* until its terminal report was acked: hello keeps naming it, so the hub never
  hands it back while its outcome is still on the way.
- A cancel is journaled even for a task not journaled yet (a row in phase `cancelled`), so the
  assignment, if it comes later, is never started.

Every statement is a few rows in WAL mode with `synchronous=FULL`; they are fast enough to run
on the event loop (well under a millisecond), unlike the subprocesses, which never block it.
"""

import json
import sqlite3
import time
from collections.abc import Generator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ValidationError

from agentcom_common.contracts.task import TaskView
from agentcom_common.errors import UnavailableError

Phase = Literal["received", "accepted", "running", "finished", "cancelled"]
OPEN_PHASES: Final = ("received", "accepted", "running")
TERMINAL_KINDS: Final = frozenset({"rejected", "completed", "partial_pass", "failed", "cancelled"})

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS task (
    task_id TEXT NOT NULL,
    generation INTEGER NOT NULL,
    body TEXT NOT NULL,
    phase TEXT NOT NULL,
    pgid INTEGER,
    workspace TEXT,
    branch TEXT,
    received_at REAL NOT NULL,
    deadline REAL,
    PRIMARY KEY (task_id, generation)
);
CREATE TABLE IF NOT EXISTS report (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT,
    generation INTEGER,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    sent_at REAL
);
CREATE INDEX IF NOT EXISTS report_unsent ON report (seq) WHERE sent_at IS NULL;
"""


@dataclass(frozen=True, slots=True)
class TaskRow:
    task_id: str
    generation: int
    task: TaskView | None
    """The task as the hub sent it; None when the stored body is not one (`unreadable` says
    why): a cancel's placeholder row, or an assignment whose task did not parse."""
    phase: Phase
    pgid: int | None
    workspace: str | None
    branch: str | None
    deadline: float | None = None
    """The hub's deadline for the whole assignment (Unix time), if it sent one."""
    unreadable: str | None = None


_ROW: Final = "task_id, generation, body, phase, pgid, workspace, branch, deadline"


def _row(r: Any) -> TaskRow:
    # a body from an older sidecar is the same TaskView as JSON; one that does not parse
    # (never a crash here: every start reads the open rows) is rejected when it is decided
    try:
        task, unreadable = TaskView.model_validate_json(r[2]), None
    except ValidationError as exc:
        task, unreadable = None, unreadable_task(exc)
    return TaskRow(r[0], r[1], task, r[3], r[4], r[5], r[6], r[7], unreadable)


def unreadable_task(exc: ValidationError) -> str:
    """Why a task body is not a `TaskView`, naming the first field it fails on."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "the body"
    return f"the task is not a valid TaskView: {where}: {first['msg']}"[:4000]


@dataclass(frozen=True, slots=True)
class ReportRow:
    seq: int
    task_id: str | None
    generation: int | None
    kind: str
    payload: bytes


class Journal:
    """One SQLite file; one `Journal` per process (10 agents on a host: 10 files)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            if self._db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("quick_check failed")
            self._db.executescript(_SCHEMA)
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(task)")}
            if "deadline" not in columns:  # a journal from before assignments had deadlines
                self._db.execute("ALTER TABLE task ADD COLUMN deadline REAL")
        except sqlite3.DatabaseError as exc:
            self._db.close()
            # never start empty over a damaged journal: that would forget a task silently
            raise UnavailableError(
                f"the journal {path} is damaged ({exc}); move it aside to start fresh, "
                "knowing that any task it held must be checked at the hub",
                code="journal_damaged",
            ) from None
        path.chmod(0o600)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Generator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def receive(
        self,
        task_id: str,
        generation: int,
        body: TaskView | Mapping[str, object],
        deadline: float | None = None,
    ) -> bool:
        """Journal an assignment (with the hub's deadline, Unix time); False if this (task,
        generation) was journaled before. `body` is a raw object only for an assignment whose
        task did not parse: it is kept as it came, to be rejected."""
        stored = body.model_dump_json() if isinstance(body, TaskView) else json.dumps(body)
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO task"
                " (task_id, generation, body, phase, received_at, deadline)"
                " VALUES (?, ?, ?, 'received', ?, ?)",
                (task_id, generation, stored, time.time(), deadline),
            )
            return cur.rowcount == 1

    def advance(
        self,
        task_id: str,
        generation: int,
        phase: Phase,
        reports: list[tuple[str, bytes]] = [],  # noqa: B006  # read only
        **fields: str | int | None,
    ) -> None:
        """Move a task to `phase` (and set `pgid`/`workspace`/`branch`) with its reports, atomically."""
        sets = ", ".join(f"{name} = ?" for name in ("phase", *fields))
        with self._tx() as db:
            db.execute(
                f"UPDATE task SET {sets} WHERE task_id = ? AND generation = ?",  # names are ours
                (phase, *fields.values(), task_id, generation),
            )
            for kind, payload in reports:
                db.execute(
                    "INSERT INTO report (task_id, generation, kind, payload) VALUES (?, ?, ?, ?)",
                    (task_id, generation, kind, payload.decode()),
                )

    def cancel(self, task_id: str, generation: int, report: bytes) -> bool:
        """Mark (task, generation) cancelled with its `cancelled` report, atomically. A task not
        journaled yet gets a row in phase `cancelled`, so its assignment is never started. False
        if it was cancelled before (a redelivered cancel: it has been reported already)."""
        with self._tx() as db:
            found = db.execute(
                "SELECT phase FROM task WHERE task_id = ? AND generation = ?", (task_id, generation)
            ).fetchone()
            if found is not None and found[0] == "cancelled":
                return False
            if found is None:
                db.execute(
                    "INSERT INTO task (task_id, generation, body, phase, received_at)"
                    " VALUES (?, ?, '{}', 'cancelled', ?)",
                    (task_id, generation, time.time()),
                )
            else:
                db.execute(
                    "UPDATE task SET phase = 'cancelled', pgid = NULL"
                    " WHERE task_id = ? AND generation = ?",
                    (task_id, generation),
                )
            db.execute(
                "INSERT INTO report (task_id, generation, kind, payload)"
                " VALUES (?, ?, 'cancelled', ?)",
                (task_id, generation, report.decode()),
            )
        return True

    def phase(self, task_id: str, generation: int) -> Phase | None:
        found = self._db.execute(
            "SELECT phase FROM task WHERE task_id = ? AND generation = ?", (task_id, generation)
        ).fetchone()
        return found[0] if found else None

    def set_pgid(self, task_id: str, generation: int, pgid: int | None) -> None:
        self._db.execute(
            "UPDATE task SET pgid = ? WHERE task_id = ? AND generation = ?",
            (pgid, task_id, generation),
        )

    def add_report(
        self, kind: str, payload: bytes, task_id: str | None = None, generation: int | None = None
    ) -> int:
        cur = self._db.execute(
            "INSERT INTO report (task_id, generation, kind, payload) VALUES (?, ?, ?, ?)",
            (task_id, generation, kind, payload.decode()),
        )
        return int(cur.lastrowid or 0)

    def unsent(self, limit: int = 100) -> list[ReportRow]:
        rows = self._db.execute(
            "SELECT seq, task_id, generation, kind, payload FROM report"
            " WHERE sent_at IS NULL ORDER BY seq LIMIT ?",
            (limit,),
        ).fetchall()
        return [ReportRow(r[0], r[1], r[2], r[3], r[4].encode()) for r in rows]

    def mark_sent(self, seq: int) -> None:
        """The stream acked report `seq`; progress of a closed task is pruned."""
        with self._tx() as db:
            db.execute("UPDATE report SET sent_at = ? WHERE seq = ?", (time.time(), seq))
            db.execute(
                "DELETE FROM report WHERE sent_at IS NOT NULL AND kind IN ('progress', 'tool_call')"
                " AND seq < ? AND task_id IN (SELECT task_id FROM report WHERE seq = ? AND kind IN"
                " ('rejected', 'completed', 'partial_pass', 'failed', 'cancelled'))",
                (seq, seq),
            )

    def open_task(self) -> TaskRow | None:
        """The task this agent holds: not finished, or finished (or cancelled) with its outcome
        still unsent; one not finished comes first."""
        row = self._db.execute(
            f"SELECT {_ROW} FROM task t WHERE phase IN ('received', 'accepted', 'running')"
            " OR (phase IN ('finished', 'cancelled') AND EXISTS (SELECT 1 FROM report r"
            "     WHERE r.task_id = t.task_id AND r.generation = t.generation"
            "     AND r.sent_at IS NULL AND r.kind IN"
            "     ('rejected', 'completed', 'partial_pass', 'failed', 'cancelled')))"
            " ORDER BY phase IN ('received', 'accepted', 'running') DESC, received_at DESC"
            " LIMIT 1"
        ).fetchone()
        return None if row is None else _row(row)

    def newest_generation(self, task_id: str) -> int:
        """The highest generation of `task_id` journaled so far, 0 if none."""
        row = self._db.execute(
            "SELECT max(generation) FROM task WHERE task_id = ?", (task_id,)
        ).fetchone()
        return int(row[0] or 0)

    def received(self) -> list[TaskRow]:
        """Assignments journaled but not yet accepted or rejected, oldest first."""
        rows = self._db.execute(
            f"SELECT {_ROW} FROM task WHERE phase = 'received' ORDER BY received_at"
        ).fetchall()
        return [_row(r) for r in rows]

    def prune(self, keep: int) -> list[str]:
        """Forget closed tasks beyond the newest `keep`, with their sent reports; returns their
        ids so their per-task files can go too. Open tasks and unsent reports always stay."""
        with self._tx() as db:
            old = [
                r[0]
                for r in db.execute(
                    "SELECT task_id FROM task WHERE phase IN ('finished', 'cancelled')"
                    " AND task_id NOT IN (SELECT task_id FROM report WHERE sent_at IS NULL"
                    "     AND task_id IS NOT NULL)"
                    " ORDER BY received_at DESC LIMIT -1 OFFSET ?",
                    (keep,),
                )
            ]
            for task_id in old:
                db.execute(
                    "DELETE FROM report WHERE task_id = ? AND sent_at IS NOT NULL", (task_id,)
                )
                db.execute("DELETE FROM task WHERE task_id = ?", (task_id,))
            db.execute("DELETE FROM report WHERE task_id IS NULL AND sent_at IS NOT NULL")
        return old

    def counts(self) -> dict[str, int]:
        """For `agentcom sidecar status`: unsent reports and tasks per phase."""
        found = {
            "unsent_reports": self._db.execute(
                "SELECT count(*) FROM report WHERE sent_at IS NULL"
            ).fetchone()[0]
        }
        for phase, n in self._db.execute("SELECT phase, count(*) FROM task GROUP BY phase"):
            found[f"tasks_{phase}"] = n
        return found

    def outcomes(self) -> list[tuple[str, int, str]]:
        """(task, generation, kind) of every terminal report, oldest first (status and tests)."""
        return [
            (r[0], r[1], r[2])
            for r in self._db.execute(
                "SELECT task_id, generation, kind FROM report WHERE kind IN"
                " ('rejected', 'completed', 'partial_pass', 'failed', 'cancelled') ORDER BY seq"
            )
        ]


def dump(report: BaseModel) -> bytes:
    """A report as the journal stores and the courier sends it."""
    return report.model_dump_json().encode()
