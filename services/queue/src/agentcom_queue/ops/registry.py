"""The repo registry: the ordered list of repos a task without one inherits the first
active one of."""

from typing import Any

from agentcom_common.errors import (
    ConflictError,
    InvalidError,
    NotFoundError,
)
from agentcom_queue import store
from agentcom_queue.ops.core import Queue, clone_url, normalize_repo


async def list_repos(q: Queue) -> list[dict[str, Any]]:
    async with q.engine.connect() as conn:
        rows = await store.list_repos(conn)
    return [
        {
            "url": r.url,
            "clone_url": r.clone_url or r.url,
            "position": r.position,
            "paused": r.paused,
            "added_by": r.added_by,
        }
        for r in rows
    ]


async def add_repo(q: Queue, url: str, actor: str) -> list[dict[str, Any]]:
    normalized = normalize_repo(url)
    if not normalized:
        raise InvalidError("url is empty after trimming", field="url")
    async with q.engine.begin() as conn:
        await store.add_repo(conn, normalized, clone_url(url) or normalized, actor)
    return await list_repos(q)


async def remove_repo(q: Queue, url: str) -> list[dict[str, Any]]:
    async with q.engine.begin() as conn:
        if not await store.remove_repo(conn, normalize_repo(url) or ""):
            raise NotFoundError(f"no repo {url}", code="repo_not_found")
    return await list_repos(q)


async def pause_repo(q: Queue, url: str, paused: bool) -> list[dict[str, Any]]:
    async with q.engine.begin() as conn:
        if not await store.set_paused(conn, normalize_repo(url) or "", paused):
            raise NotFoundError(f"no repo {url}", code="repo_not_found")
    return await list_repos(q)


async def reorder_repos(q: Queue, order: list[str]) -> list[dict[str, Any]]:
    wanted = [normalize_repo(u) or "" for u in order]
    async with q.engine.begin() as conn:
        known = {r.url for r in await store.list_repos(conn)}
        if set(wanted) != known or len(wanted) != len(known):
            # well-formed, but not what is registered now: the state refuses it (409)
            raise ConflictError(
                "order must list every registered repo exactly once; registered: "
                + ", ".join(sorted(known)),
                code="order_mismatch",
                field="order",
            )
        await store.reorder_repos(conn, wanted)
    return await list_repos(q)
