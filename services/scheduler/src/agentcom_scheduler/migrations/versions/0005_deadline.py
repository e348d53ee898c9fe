"""When the held assignment must be done by (execution deadline).

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
    op.add_column("agents", sa.Column("deadline", sa.DateTime(timezone=True)), schema="scheduler")


def downgrade() -> None:
    op.drop_column("agents", "deadline", schema="scheduler")
