"""Endpoints and the call ledger.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "endpoints",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("base_url", sa.Text(), nullable=False),
        sa.Column("api_key", sa.Text()),
        sa.Column("classes", sa.JSON(), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("host", sa.Text()),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        schema="llm",
    )
    op.create_table(
        "calls",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("caller", sa.Text(), nullable=False),
        sa.Column("caller_class", sa.Text(), nullable=False),
        sa.Column("endpoint_id", sa.Text()),
        sa.Column("model", sa.Text()),
        sa.Column("tier", sa.Text()),
        sa.Column("tokens_in", sa.Integer(), nullable=False),
        sa.Column("tokens_out", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        schema="llm",
    )
    op.create_index("calls_at_idx", "calls", ["at"], schema="llm")
    op.create_index("calls_class_at_idx", "calls", ["caller_class", "at"], schema="llm")


def downgrade() -> None:
    op.drop_table("calls", schema="llm")
    op.drop_table("endpoints", schema="llm")
