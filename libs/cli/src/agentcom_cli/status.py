"""`agentcom status`: health and URL of every part of the stack."""

import asyncio
import os
from typing import TYPE_CHECKING

import httpx

from agentcom_cli import dumps, probes, stack
from agentcom_cli.console import aligned, out
from agentcom_common.settings import SERVICE_NAMES, CommonSettings

if TYPE_CHECKING:  # SQLAlchemy: imported only when Postgres answers
    from agentcom_common import backups


async def collect(settings: CommonSettings) -> list[probes.PartStatus]:
    running = stack.read(settings.home)
    nats_url = stack.hub_nats_url(settings)
    db_url = (
        settings.database_url.get_secret_value()
        if settings.database_url
        else (running.database_url if running else None)
    )
    urls = stack.service_urls(settings, running)  # every replica `up --replicas` runs
    async with httpx.AsyncClient(timeout=2) as client:
        parts = list(
            await asyncio.gather(
                *(probes.service_ready(client, name, url) for name, url in urls.items()),
                probes.nats_ok(nats_url),
                probes.postgres_ok(db_url) if db_url else _no_db(),
            )
        )
    if parts[len(urls)].ok:
        replies = await probes.micro_ping(nats_url, expected=len(urls))
        names = sorted(r["name"] for r in replies)
        shown = ", ".join(dict.fromkeys(names)) or "none"  # replicas answer under one name
        parts.append(
            probes.PartStatus(
                "nats.micro",
                # each service answers under its micro name, `agentcom-<service>`
                len(names) == len(urls)
                and set(names) >= {f"agentcom-{name}" for name in SERVICE_NAMES},
                "$SRV.PING",
                f"{len(names)} of {len(urls)} answered: {shown}",
            )
        )
    reachable = db_url is not None and parts[len(urls) + 1].ok
    recorded = await _recorded(db_url) if reachable and db_url else None
    ok, detail = dumps.health(settings.home.resolve(), settings.backup_interval, recorded)
    parts.append(probes.PartStatus("backups", ok, str(dumps.directory(settings.home)), detail))
    return parts


async def _recorded(db_url: str) -> "backups.Summary | None":
    """Postgres's record of the backup attempts (`ops.backups`); None when it cannot be read
    (no attempt was ever recorded, so the table is not there yet: the local files still tell)."""
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.ext.asyncio import create_async_engine

    from agentcom_common import backups, db

    engine = create_async_engine(db.async_url(db_url), pool_size=1, connect_args={"timeout": 5})
    try:
        return await backups.latest(engine)
    except (OSError, SQLAlchemyError):  # status answers whatever the database says
        return None
    finally:
        await engine.dispose()


async def _no_db() -> probes.PartStatus:
    return probes.PartStatus(
        "postgres", False, "-", "unknown: no stack.json here and AGENTCOM_DATABASE_URL unset"
    )


def render(parts: list[probes.PartStatus], as_json: bool) -> bool:
    """Print the parts; True when all are healthy."""
    healthy = all(p.ok for p in parts)
    if as_json:
        out().print_json(
            stack.dumps(
                {
                    "healthy": healthy,
                    "parts": [
                        {"part": p.part, "ok": p.ok, "url": p.url, "detail": p.detail}
                        for p in parts
                    ],
                }
            )
        )
        return healthy
    out().print(f"AgentCom status ({os.getcwd()})", soft_wrap=True)
    rows = [("part", "state", "url", "detail")]
    rows += [(p.part, "ok" if p.ok else "down", p.url, p.detail) for p in parts]
    aligned(rows)
    return healthy
