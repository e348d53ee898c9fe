"""Tier fallbacks in Postgres: every replica routes a fallen-back tier alike, across restarts.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tier_fallbacks",
        sa.Column("tier", sa.Text(), primary_key=True),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
        sa.Column(
            "set_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        schema="llm",
    )


def downgrade() -> None:
    op.drop_table("tier_fallbacks", schema="llm")
