"""A small asyncpg pool for claims, the one op called hundreds of times a second one by one.

Through SQLAlchemy a single claim spent more CPU in the engine than in the claim: a pool
checkout with its ping (then `pool_pre_ping`, three round trips: the asyncpg adapter pinged
inside a transaction it opened and rolled back; one since, `db.create_engine`), statement and
result set-up. The claim is one statement (`store_batch.CLAIM_ASYNCPG`), so it needs no
transaction of ours either. A connection that Postgres dropped is noticed by asyncpg when the
socket closes and replaced at the next acquire.

The pool's sessions plan without bitmap scans and with sorts discouraged (`PLANNER`): the claim
must walk `tasks_claim (lane, seq)` in order and stop after `limit` rows. With statistics taken
while the table was small or mostly claimed (autovacuum's ANALYZE lags a burst of submits), the
planner estimated one matching row and chose a bitmap scan of *every* queued task plus a sort:
50-70 ms and ~1,100 buffers per claim at 20,000 queued tasks, against 0.7 ms for the ordered
index scan (EXPLAIN ANALYZE in the middle of the bench's cycle). The pool also runs the batch
reports' lock and update, which look tasks up by primary key either way. Its plans are generic
(`plan_cache_mode`): the statements are prepared once per connection and their plans do not
depend on the values, so re-planning each call (0.17 ms of Postgres CPU per single claim,
pg_stat_statements during the bench's latency phase) bought nothing.
"""

import asyncio
import contextlib
import json
from typing import Any, Final

import asyncpg

from agentcom_common.settings import CommonSettings


def _text(value: str) -> str:
    return value


async def _codecs(conn: Any) -> None:
    """JSON in and out as the engine's connections have it (text in, Python values out)."""
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=_text, decoder=json.loads, schema="pg_catalog")


PLANNER: Final = {
    "enable_bitmapscan": "off",
    "enable_sort": "off",
    "plan_cache_mode": "force_generic_plan",
}


async def _keep(_conn: Any) -> None:
    """Release without `RESET ALL`: claims change no session state (saves a round trip)."""


async def open_pool(settings: CommonSettings) -> Any:
    assert settings.database_url is not None  # the engine refused to start without it
    create_pool: Any = asyncpg.create_pool  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # asyncpg: no stubs
    return await create_pool(
        settings.database_url.get_secret_value(),
        min_size=1,
        max_size=settings.db_pool_size,
        init=_codecs,
        reset=_keep,
        server_settings=PLANNER,
    )


async def hold(pool: Any) -> None:
    """A loop that owns `pool`: closes it when the service stops (waits up to 2 s for claims)."""
    try:
        await asyncio.Event().wait()
    finally:
        try:
            await asyncio.wait_for(pool.close(), timeout=2)
        except (TimeoutError, asyncio.CancelledError):
            pool.terminate()
        with contextlib.suppress(Exception):
            pool.terminate()
