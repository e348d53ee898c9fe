"""Budgets in tokens and USD per agent, goal and hub state; the goal of each call.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "budgets",
        sa.Column("scope", sa.Text(), primary_key=True),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("usd", sa.Float(), nullable=False),
        sa.Column("max_tokens", sa.BigInteger()),
        sa.Column("max_usd", sa.Float()),
        schema="llm",
    )
    op.add_column("calls", sa.Column("goal_id", sa.Text()), schema="llm")


def downgrade() -> None:
    op.drop_column("calls", "goal_id", schema="llm")
    op.drop_table("budgets", schema="llm")
