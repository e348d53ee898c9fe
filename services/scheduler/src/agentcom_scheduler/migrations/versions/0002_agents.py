"""Agents and their state history.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("capabilities", ARRAY(sa.Text), nullable=False),
        sa.Column("repos", ARRAY(sa.Text), nullable=False),
        sa.Column("token_id", sa.Text, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema="scheduler",
    )
    op.create_table(
        "agent_history",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("agent_id", sa.Text, sa.ForeignKey("scheduler.agents.id", ondelete="CASCADE")),
        sa.Column("from_state", sa.Text),
        sa.Column("to_state", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema="scheduler",
    )
    op.create_index("ix_agent_history_agent_id", "agent_history", ["agent_id"], schema="scheduler")


def downgrade() -> None:
    op.drop_table("agent_history", schema="scheduler")
    op.drop_table("agents", schema="scheduler")
