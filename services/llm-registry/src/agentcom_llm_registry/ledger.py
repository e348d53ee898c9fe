"""The cost ledger and sliding-window budgets.

A call's row is written where it cannot be lost before it is anywhere slow:
1. at the end of the call it is appended (one `write`, no fsync) to the journal file
   `<ledger dir>/current.jsonl` and to an in-memory buffer; the reply does not wait on Postgres;
2. every `flush_interval` the flusher rotates the journal to `<n>.jsonl`, inserts the buffered
   rows with an `agentcom.evt.llm.routed` outbox event per new row in one transaction, then
   deletes the rotated file. A failed pass puts its rows back in the buffer and keeps its file;
   the next successful pass commits those rows too and deletes every file rotated until then.

What a crash does: the process dying (SIGKILL, OOM) loses nothing - the journal lines are in
the OS page cache, and at start `replay()` inserts every journal file's rows with
`ON CONFLICT DO NOTHING` (row ids are made at call time), so a row already flushed is not
counted twice. Only a machine crash within the OS write-back delay (~5 s) can lose the newest
rows; we trade that for not paying an fsync per call.

Budgets are not counted here: they are reserved and settled in Postgres on the call path
(`budgets.py`), since a budget must hold across concurrent calls, replicas and restarts.
"""

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Table, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import clock, outbox, prices, subjects
from agentcom_common.contracts.llm import Routing
from agentcom_llm_registry import meters, store, tables

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Entry:
    id: str
    at: str  # ISO time
    caller: str
    caller_class: str
    endpoint_id: str | None
    model: str | None
    tier: str | None
    tokens_in: int
    tokens_out: int
    duration_ms: float
    cost_usd: float
    ok: bool
    seq: int
    goal_id: str | None = None  # a hub call about this goal
    routing: str = "null"  # the Routing as JSON text, made once per call


class Ledger:
    def __init__(
        self,
        engine: AsyncEngine,
        outbox: Table,
        directory: Path,
        prices_table: Mapping[str, prices.Rates],
        flush_interval: timedelta,
    ) -> None:
        self.engine = engine
        self.outbox = outbox
        self.dir = directory
        self.prices = prices_table
        self.interval = flush_interval.total_seconds()
        self.buffer: list[Entry] = []
        self.seq = 0
        self._journal: Any = None
        self._lock = asyncio.Lock()
        self._unflushed: list[Path] = []  # rotated journals whose rows are not committed yet

    def open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._journal = (self.dir / "current.jsonl").open("a", encoding="utf-8")

    def price(self, model: str | None, tokens_in: int, tokens_out: int) -> float:
        return prices.cost(model, tokens_in, tokens_out, self.prices)

    def record(
        self,
        *,
        caller: str,
        caller_class: str,
        routing: Routing,
        tokens_in: int,
        tokens_out: int,
        seconds: float,
        ok: bool,
        goal_id: str | None = None,
    ) -> Entry:
        """Journal and buffer one call; cheap enough for the request path (no await)."""
        self.seq += 1
        entry = Entry(
            id=uuid.uuid4().hex,
            at=clock.now().isoformat(),
            caller=caller,
            caller_class=caller_class,
            endpoint_id=routing.endpoint_id,
            model=routing.model,
            tier=routing.tier,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            duration_ms=round(seconds * 1000, 3),
            cost_usd=self.price(routing.model, tokens_in, tokens_out),
            ok=ok,
            seq=self.seq,
            goal_id=goal_id,
            routing=routing.model_dump_json(),
        )
        meters.record_call(
            entry.endpoint_id,
            entry.model,
            entry.tier,
            tokens_in,
            tokens_out,
            seconds,
            entry.cost_usd,
            ok=ok,
        )
        if self._journal is not None:
            self._journal.write(_line(entry) + "\n")
            self._journal.flush()  # into the OS: survives this process dying
        self.buffer.append(entry)
        return entry

    async def flush(self) -> int:
        """Rotate the journal, write buffered rows and their events, delete the rotated file."""
        async with self._lock:
            if not self.buffer:
                return 0
            rows, self.buffer = self.buffer, []
            if (rotated := self._rotate()) is not None:
                self._unflushed.append(rotated)
            try:
                await self._insert(rows)
            except Exception:
                self.buffer[:0] = rows  # keep them for the next pass; the file stays too
                raise
            # the rows of every file rotated so far are committed now: this pass's and those of
            # failed passes (their rows went back into the buffer and were inserted just now).
            # Before, a failed pass's file stayed until the next start replayed it.
            for path in self._unflushed:
                path.unlink(missing_ok=True)
            self._unflushed.clear()
            return len(rows)

    async def costs(self, since: datetime, group_by: str) -> list[Any]:
        """The calls since `since`, summed per `group_by` (`store.cost_summary`), after a flush
        so the newest calls count."""
        await self.flush()
        async with self.engine.connect() as conn:
            return await store.cost_summary(conn, since, group_by)

    def _rotate(self) -> Path | None:
        if self._journal is None:
            return None
        self._journal.close()
        rotated = self.dir / f"{time.time_ns()}.jsonl"
        os.replace(self.dir / "current.jsonl", rotated)
        self._journal = (self.dir / "current.jsonl").open("a", encoding="utf-8")
        return rotated

    async def _insert(self, rows: list[Entry]) -> None:
        """Insert rows (a replayed id is skipped) and a routed event per new row, together.

        The events go into the outbox in the same transaction as their rows, so a crash after
        the commit still delivers them and a rolled-back flush emits none. This costs one
        executemany per flush, off the request path.
        """
        async with self.engine.begin() as conn:
            for start in range(0, len(rows), CHUNK):
                chunk = rows[start : start + CHUNK]
                # executemany of one cached statement: a multi-VALUES insert would be compiled
                # afresh for every batch, which cost more CPU than the calls it records
                result = await conn.execute(_INSERT, [_values(r) for r in chunk])
                fresh = {row.id for row in result}
                events: list[dict[str, object]] = [
                    {"subject": subjects.LLM_ROUTED, "payload": _event(r), "headers": _NO_HEADERS}
                    for r in chunk
                    if r.id in fresh
                ]
                if events:
                    await conn.execute(self.outbox.insert(), events)
                await asyncio.sleep(0)  # let waiting requests run between chunks (tail latency)
            await conn.execute(text(f"NOTIFY {outbox.channel(self.outbox)}"))

    async def replay(self) -> int:
        """Insert every journal file left by an earlier process; returns how many rows were read."""
        self.dir.mkdir(parents=True, exist_ok=True)
        total = 0
        for path in sorted(self.dir.glob("*.jsonl")):
            if self._journal is not None and path.name == "current.jsonl":
                continue
            rows: list[Entry] = []
            for line in path.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(ValueError, TypeError):  # a torn last line is skipped
                    fields = json.loads(line)
                    fields["routing"] = json.dumps(fields.get("routing"))
                    rows.append(Entry(**fields))
            for start in range(0, len(rows), 500):
                await self._insert(rows[start : start + 500])
            path.unlink()
            total += len(rows)
        return total

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except Exception:  # Postgres away: rows stay buffered and journaled
                log.exception("ledger.flush_failed")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.flush()
        if self._journal is not None:
            self._journal.close()
            self._journal = None


_NO_HEADERS: dict[str, str] = {}  # the relay adds its own trace context
CHUNK = 100  # rows per insert / events per slice: keeps each pause of the event loop short
_INSERT = insert(tables.calls).on_conflict_do_nothing().returning(tables.calls.c.id)
_FIELDS = tuple(f for f in Entry.__dataclass_fields__ if f != "routing")


def _line(entry: Entry) -> str:
    """The journal line: the row's fields with the routing object spliced in as JSON."""
    plain = {k: getattr(entry, k) for k in _FIELDS}
    return json.dumps(plain)[:-1] + ', "routing": ' + entry.routing + "}"


def _values(entry: Entry) -> dict[str, Any]:
    plain = {k: getattr(entry, k) for k in _FIELDS}
    return plain | {"at": datetime.fromisoformat(entry.at)}


def _event(entry: Entry) -> bytes:
    """`CallRouted` as JSON, built by splicing the routing text (no re-validation per row)."""
    head = {
        "schema_version": 1,
        "call_id": entry.id,
        "caller": entry.caller,
        "caller_class": entry.caller_class,
        "goal_id": entry.goal_id,
        "ok": entry.ok,
        "tokens_in": entry.tokens_in,
        "tokens_out": entry.tokens_out,
        "duration_ms": entry.duration_ms,
        "cost_usd": entry.cost_usd,
        "at": entry.at,
    }
    return (json.dumps(head)[:-1] + ', "routing": ' + entry.routing + "}").encode()
