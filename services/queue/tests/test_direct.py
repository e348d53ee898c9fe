"""The claim pool's planner settings: a claim walks `tasks_claim` in order, whatever the stats."""

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common.settings import CommonSettings
from agentcom_queue import direct, store_batch


async def _plan_nodes(driver: Any) -> list[str]:
    explained = await driver.fetchval(
        f"EXPLAIN (FORMAT JSON) {store_batch.CLAIM_ASYNCPG}",
        "a1",
        [],
        [],
        100,
        "{}",
        "agentcom.evt.task.assigned",
    )
    found: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        found.append(f"{node['Node Type']} {node.get('Index Name', '')}".strip())
        for child in node.get("Plans", []):
            walk(child)

    walk(explained[0]["Plan"])  # the pool decodes json
    return found


async def test_a_claim_scans_the_claim_index_in_order_with_stale_statistics(
    engine: AsyncEngine, settings: CommonSettings
) -> None:
    async with engine.begin() as conn:  # statistics of an empty table, then a burst of tasks
        await conn.execute(text("ANALYZE queue.tasks"))
        await conn.execute(
            text(
                "INSERT INTO queue.tasks (id, state, lane, description, max_retries, "
                "needed_capabilities, file_hints, success_criteria, verification_steps, "
                "complexity, depends_on, metadata, submitted_by) "
                "SELECT 'task-' || n, 'queued', n % 4, 'x', 3, '{}', '[]', '[]', '[]', '{}', "
                "'{}', '{}', 't' FROM generate_series(1, 5000) n"
            )
        )
    pool = await direct.open_pool(settings)
    try:
        async with pool.acquire() as driver:
            nodes = await _plan_nodes(driver)
    finally:
        await pool.close()

    assert "Index Scan tasks_claim" in nodes, nodes
    assert not any(node.startswith("Bitmap") for node in nodes), nodes
