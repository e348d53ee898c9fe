"""Rate limits, overrides and cut-offs in Postgres: shared by every scheduler replica and kept
across restarts (they were in each process's memory: replicas each counted, a restart forgave).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_buckets",
        sa.Column("agent_id", sa.Text(), primary_key=True),
        sa.Column("tier", sa.Text(), primary_key=True),
        sa.Column("per_minute", sa.Float(), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("granted", sa.Integer(), nullable=False),
        sa.Column("stamp", sa.DateTime(timezone=True), nullable=False),
        schema="scheduler",
    )
    op.create_table(
        "rate_overrides",
        sa.Column("agent_id", sa.Text(), primary_key=True),
        sa.Column("light", sa.Integer()),
        sa.Column("normal", sa.Integer()),
        sa.Column("heavy", sa.Integer()),
        schema="scheduler",
    )
    op.create_table(
        "cutoffs",
        sa.Column("agent_id", sa.Text(), primary_key=True),
        sa.Column("violations", postgresql.ARRAY(sa.DateTime(timezone=True)), nullable=False),
        sa.Column("cut_offs", sa.Integer(), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True)),
        schema="scheduler",
    )


def downgrade() -> None:
    op.drop_table("cutoffs", schema="scheduler")
    op.drop_table("rate_overrides", schema="scheduler")
    op.drop_table("rate_buckets", schema="scheduler")
