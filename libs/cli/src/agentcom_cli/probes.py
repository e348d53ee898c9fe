"""Asking each part of a stack whether it is up: HTTP /readyz, NATS, Postgres, nats.micro."""

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from nats.aio.client import Client
from nats.aio.msg import Msg

from agentcom_common import cancelling, messaging, natsauth


@dataclass(frozen=True, slots=True)
class PartStatus:
    part: str
    ok: bool
    url: str
    detail: str


async def service_ready(client: httpx.AsyncClient, name: str, base_url: str) -> PartStatus:
    url = f"{base_url}/readyz"
    try:
        response = await client.get(url)
    except httpx.HTTPError as exc:
        return PartStatus(name, False, base_url, f"unreachable ({type(exc).__name__})")
    if response.status_code == 200:
        return PartStatus(name, True, base_url, "ready")
    failing = [c["name"] for c in response.json().get("checks", []) if not c.get("ok")]
    return PartStatus(
        name, False, base_url, f"not ready: {', '.join(failing) or response.status_code}"
    )


async def wait_ready(
    base_urls: dict[str, str],
    deadline: float,
    on_ready: Callable[[PartStatus], None] | None = None,
) -> dict[str, PartStatus]:
    """Poll every /readyz until all answer 200 or `deadline` seconds pass; `on_ready` hears of
    each part once, when it first answers 200."""
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + deadline
    told: set[str] = set()
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            results = await asyncio.gather(
                *(service_ready(client, name, url) for name, url in base_urls.items())
            )
            for ready in (r for r in results if r.ok and r.part not in told):
                told.add(ready.part)
                if on_ready is not None:
                    on_ready(ready)
            if all(r.ok for r in results) or loop.time() >= stop_at:
                return {r.part: r for r in results}
            await asyncio.sleep(0.2)


async def port_open(host: str, port: int, deadline: float) -> bool:
    """Whether something accepts TCP connections on `host:port` within `deadline` seconds."""
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + deadline
    while True:
        try:
            _reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            if loop.time() >= stop_at:
                return False
            await asyncio.sleep(0.05)
        else:
            writer.close()
            await writer.wait_closed()
            return True


async def nats_ok(url: str, timeout: float = 2.0) -> PartStatus:
    shown = natsauth.redact(url)
    try:
        nc = await messaging.connect_once(url, timeout)
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "down"; the kind is the detail
        return PartStatus("nats", False, shown, f"unreachable ({type(exc).__name__})")
    try:
        await nc.flush(timeout=int(max(1, timeout)))
        return PartStatus("nats", True, shown, f"server v{_version(nc)}")
    finally:
        await nc.close()


async def postgres_ok(url: str) -> PartStatus:
    """`SELECT 1` over one asyncpg connection: SQLAlchemy would add ~0.5 s to `status`."""
    import asyncpg

    shown = url.split("@")[-1] if "@" in url else url
    # asyncpg reads postgresql:// URLs (with ?host=/socket/dir too), not SQLAlchemy's driver names
    dsn = "postgresql" + url[url.index(":") :] if url.startswith("postgres") else url
    try:
        async with asyncio.timeout(3):
            connect: Any = asyncpg.connect  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]  # asyncpg: no stubs
            conn = await connect(dsn)
            try:
                await conn.fetchval("SELECT 1")
            finally:
                await conn.close()
    except Exception as exc:  # noqa: BLE001 - any failure of the probe is "down"; the kind is the detail
        return PartStatus("postgres", False, shown, f"unreachable ({type(exc).__name__})")
    return PartStatus("postgres", True, shown, "accepting connections")


async def micro_ping(url: str, expected: int, window: float = 2.0) -> list[dict[str, str]]:
    """Scatter `$SRV.PING` and gather replies until `expected` arrive or `window` passes."""
    nc = await messaging.connect_once(url, window)
    replies: list[dict[str, str]] = []
    done = asyncio.Event()

    async def collect(msg: Msg) -> None:
        replies.append(json.loads(msg.data))
        if len(replies) >= expected:
            done.set()

    try:
        inbox = nc.new_inbox()
        await nc.subscribe(inbox, cb=collect)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
        await nc.publish("$SRV.PING", b"", reply=inbox)
        await cancelling.woken(done, window)
    finally:
        await nc.close()
    return replies


def _version(nc: Client) -> str:
    v = nc.connected_server_version
    return f"{v.major}.{v.minor}.{v.patch}"
