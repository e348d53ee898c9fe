"""Backup attempts, ok or failed, as `agentcom backup` and `agentcom up`'s schedule make them.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backups",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("file", sa.Text),
        sa.Column("size", sa.BigInteger),
        sa.Column("error", sa.Text),
        sa.Column("host", sa.Text, nullable=False),
        schema="ops",
    )
    # as `backups.py` declares them
    op.create_index("backups_finished", "backups", ["finished_at"], schema="ops")
    op.create_index(
        "backups_ok_finished",
        "backups",
        ["finished_at"],
        schema="ops",
        postgresql_where=sa.text("ok"),
    )


def downgrade() -> None:
    op.drop_table("backups", schema="ops")
