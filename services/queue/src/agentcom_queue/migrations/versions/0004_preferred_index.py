"""A partial index on the queued tasks that prefer an agent (`metadata.prefer_agent`).

Matching looks them up for the agents it offers work to (`store_batch.CLAIM_AGENTS_SQL`); most
tasks prefer none, so the index holds only those that do. `IF NOT EXISTS`: revision 0002 builds
the tables from `tables.py`, which on a new database already declares it.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX IF NOT EXISTS tasks_preferred ON queue.tasks ((metadata->>'prefer_agent')) "
        "WHERE state = 'queued' AND (metadata->>'prefer_agent') IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS queue.tasks_preferred")
