"""Contemplation: its cycles and the proposals they made (which wait for a person).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _at(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    op.create_table(
        "contemplations",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False, unique=True),
        sa.Column("repo", sa.Text()),
        sa.Column("outcome", sa.Text()),
        sa.Column("report", sa.Text(), nullable=False, server_default=sa.text("''")),
        sa.Column("analysis", JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        _at("started_at"),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        schema="hub",
    )
    op.create_table(
        "proposals",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("seq", sa.BigInteger(), sa.Identity(), nullable=False, unique=True),
        sa.Column(
            "cycle",
            sa.BigInteger(),
            sa.ForeignKey("hub.contemplations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("repo", sa.Text(), nullable=False),
        sa.Column("draft", JSONB(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False, server_default=sa.text("''")),
        sa.Column("decided_by", sa.Text()),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("goal_id", sa.Text(), sa.ForeignKey("hub.goals.id", ondelete="SET NULL")),
        _at("created_at"),
        schema="hub",
    )
    op.create_index("proposals_state", "proposals", ["state", "seq"], schema="hub")


def downgrade() -> None:
    op.drop_table("proposals", schema="hub")
    op.drop_table("contemplations", schema="hub")
