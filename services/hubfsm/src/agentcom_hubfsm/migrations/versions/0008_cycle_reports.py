"""Improving cycles keep their report: repos scanned, findings kept and dropped by reason, goals
made, budget used (`GET /api/hub/improving/cycles`).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "improvements",
        sa.Column("summary", JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        schema="hub",
    )


def downgrade() -> None:
    op.drop_column("improvements", "summary", schema="hub")
