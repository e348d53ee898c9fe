"""Improvement scanning: its cycles and every finding, kept (a goal) or dropped, with why.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _at(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    op.create_table(
        "improvements",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False, unique=True),
        sa.Column("tasks", JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("outcome", sa.Text()),
        sa.Column("report", sa.Text(), nullable=False, server_default=sa.text("''")),
        _at("started_at"),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        schema="hub",
    )
    op.create_table(
        "findings",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("seq", sa.BigInteger(), sa.Identity(), nullable=False, unique=True),
        sa.Column(
            "cycle",
            sa.BigInteger(),
            sa.ForeignKey("hub.improvements.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("repo", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("finding", JSONB(), nullable=False),
        sa.Column("files", JSONB(), nullable=False),
        sa.Column("kept", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("goal_id", sa.Text(), sa.ForeignKey("hub.goals.id", ondelete="SET NULL")),
        _at("created_at"),
        schema="hub",
    )
    op.create_index("findings_repo", "findings", ["repo", "kept", "seq"], schema="hub")
    op.create_index("findings_fingerprint", "findings", ["fingerprint", "seq"], schema="hub")


def downgrade() -> None:
    op.drop_table("findings", schema="hub")
    op.drop_table("improvements", schema="hub")
