"""An agent's NATS password (hashed) and the host resources of its last heartbeat.

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


def upgrade() -> None:
    op.add_column("agents", sa.Column("nats_secret_hash", sa.Text()), schema="scheduler")
    op.add_column("agents", sa.Column("resources", JSONB()), schema="scheduler")


def downgrade() -> None:
    op.drop_column("agents", "resources", schema="scheduler")
    op.drop_column("agents", "nats_secret_hash", schema="scheduler")
