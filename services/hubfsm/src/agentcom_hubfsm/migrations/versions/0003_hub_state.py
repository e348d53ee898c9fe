"""The hub brain: its one row (state, paused, cycle, watchdog deadline, leader) and its history.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _at(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    op.create_table(
        "hub",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("cycle", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("reason", sa.Text(), nullable=False, server_default=sa.text("''")),
        _at("entered_at"),
        sa.Column("watchdog_at", sa.DateTime(timezone=True)),
        sa.Column("seconds", JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("work", sa.Text()),
        sa.Column("leader", sa.Text()),
        sa.Column("leader_at", sa.DateTime(timezone=True)),
        _at("updated_at"),
        schema="hub",
    )
    # the one row, made here so every reader and the brain can count on it
    op.execute("INSERT INTO hub.hub (id, state, reason) VALUES ('hub', 'resting', 'created')")
    op.create_table(
        "hub_history",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column(
            "hub_id", sa.Text(), sa.ForeignKey("hub.hub.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("from_state", sa.Text()),
        sa.Column("to_state", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        _at("at"),
        schema="hub",
    )
    op.execute(
        "INSERT INTO hub.hub_history (hub_id, from_state, to_state, reason, actor) "
        "VALUES ('hub', NULL, 'resting', 'created', 'migration')"
    )


def downgrade() -> None:
    for table in ("hub_history", "hub"):
        op.drop_table(table, schema="hub")
