"""Alembic, one history per schema, run at service start.

A service's `migrations/env.py` is one call: `migrations.run_env(tables.metadata)`. `upgrade()`
takes a transaction-scoped advisory lock first, so replicas starting together migrate once.
"""

from pathlib import Path

import sqlalchemy as sa
from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import Connection, MetaData, text
from sqlalchemy.ext.asyncio import AsyncEngine


async def upgrade(engine: AsyncEngine, script_location: Path, schema: str) -> None:
    """Bring `schema` to the newest revision found in `script_location`."""
    async with engine.begin() as conn:
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"agentcom:{schema}"}
        )
        await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        await conn.run_sync(_upgrade_sync, script_location, schema)


def _upgrade_sync(connection: Connection, script_location: Path, schema: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.attributes["connection"] = connection
    config.attributes["schema"] = schema
    command.upgrade(config, "head")


def run_env(target_metadata: MetaData) -> None:
    """The body of every `env.py`: migrate on the connection `upgrade()` handed over."""
    connection: Connection = context.config.attributes["connection"]
    schema: str = context.config.attributes["schema"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table_schema=schema,
        include_schemas=True,
        include_name=lambda name, kind, _parent: kind != "schema" or name == schema,
    )
    with context.begin_transaction():
        context.run_migrations()


def create_outbox(schema: str) -> None:
    """Migration step every service shares: its own outbox table (see `outbox.py`)."""
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        schema=schema,
    )
