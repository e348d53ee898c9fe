"""Endpoints learnt from an agent belong to it until an admin shares them.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("endpoints", sa.Column("owner", sa.Text()), schema="llm")
    op.add_column(
        "endpoints",
        sa.Column("shared", sa.Boolean(), nullable=False, server_default=sa.true()),
        schema="llm",
    )
    # what a heartbeat registered before now serves its agent alone, like any learnt endpoint
    op.execute(
        "update llm.endpoints set owner = substr(source, 9), shared = false "
        "where source like 'sidecar:%'"
    )


def downgrade() -> None:
    op.drop_column("endpoints", "shared", schema="llm")
    op.drop_column("endpoints", "owner", schema="llm")
