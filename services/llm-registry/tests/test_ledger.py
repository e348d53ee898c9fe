"""The cost ledger's journal files against a real Postgres (the llm schema of the template)."""

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common.contracts.llm import Routing
from agentcom_llm_registry import tables
from agentcom_llm_registry.ledger import Ledger

ROUTING = Routing(tier="standard", endpoint_id="e", model="m", reason="test")


def _record(ledger: Ledger, caller: str) -> None:
    ledger.record(
        caller=caller,
        caller_class="agent",
        routing=ROUTING,
        tokens_in=1,
        tokens_out=1,
        seconds=0.01,
        ok=True,
    )


async def _calls(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("select caller from llm.calls order by caller"))
        return [row.caller for row in rows]


def _journals(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.jsonl"))


async def _rename_calls(engine: AsyncEngine, old: str, new: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(f"alter table llm.{old} rename to {new}"))


async def test_the_next_good_flush_removes_the_file_of_a_failed_one(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    ledger = Ledger(engine, tables.outbox_table, tmp_path, {}, timedelta(seconds=60))
    ledger.open()
    _record(ledger, "first")
    await _rename_calls(
        engine, "calls", "calls_away"
    )  # Postgres refuses the insert: a real failure
    with pytest.raises(DBAPIError, match="calls"):
        await ledger.flush()
    assert len(_journals(tmp_path)) == 2  # current + the failed pass's rotated file, kept

    await _rename_calls(engine, "calls_away", "calls")
    _record(ledger, "second")
    assert await ledger.flush() == 2

    assert await _calls(engine) == ["first", "second"]
    assert _journals(tmp_path) == ["current.jsonl"]
    await ledger.close()
    assert await ledger.replay() == 0  # nothing left for the next start
