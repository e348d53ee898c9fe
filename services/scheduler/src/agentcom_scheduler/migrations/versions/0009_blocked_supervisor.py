"""Why an agent is blocked (its sidecar's word, shown with the agent), and which supervisor
runs its sidecar (from its hello): a restart of one nothing supervises would stop it for good,
so the route refuses it.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("agents", sa.Column("blocked_reason", sa.Text()), schema="scheduler")
    op.add_column("agents", sa.Column("supervisor", sa.Text()), schema="scheduler")


def downgrade() -> None:
    op.drop_column("agents", "supervisor", schema="scheduler")
    op.drop_column("agents", "blocked_reason", schema="scheduler")
