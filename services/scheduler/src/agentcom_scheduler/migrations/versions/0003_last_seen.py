"""When each agent was last heard from (presence).

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
    op.add_column("agents", sa.Column("last_seen", sa.DateTime(timezone=True)), schema="scheduler")


def downgrade() -> None:
    op.drop_column("agents", "last_seen", schema="scheduler")
