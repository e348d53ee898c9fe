"""The task an agent holds, with its generation, and since when.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("agents", sa.Column("task_id", sa.Text), schema="scheduler")
    op.add_column("agents", sa.Column("generation", sa.Integer), schema="scheduler")
    op.add_column(
        "agents", sa.Column("assigned_at", sa.DateTime(timezone=True)), schema="scheduler"
    )


def downgrade() -> None:
    for column in ("assigned_at", "generation", "task_id"):
        op.drop_column("agents", column, schema="scheduler")
