"""Goals: the goal rows, their history, the tasks the hub submitted for them, and their
verifications.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _at(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    op.create_table(
        "goals",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("seq", sa.BigInteger(), sa.Identity(), nullable=False, unique=True),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("success_criteria", JSONB(), nullable=False),
        sa.Column("repo", sa.Text(), nullable=False),
        sa.Column("priority", sa.Text(), nullable=False),
        sa.Column("budget_tokens", sa.BigInteger()),
        sa.Column("budget_usd", sa.Float()),
        sa.Column("autonomy", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("client_key", sa.Text()),
        sa.Column("attempt", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("verify_round", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("replans", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("reason", sa.Text(), nullable=False, server_default=sa.text("''")),
        sa.Column("plan", JSONB()),
        sa.Column("plan_errors", JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("feedback", JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("cost_tokens", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("cost_usd", sa.Float(), nullable=False, server_default=sa.text("0")),
        _at("not_before"),
        sa.Column("failures", sa.Integer(), nullable=False, server_default=sa.text("0")),
        _at("created_at"),
        _at("updated_at"),
        schema="hub",
    )
    op.create_index(
        "goals_client_key",
        "goals",
        ["client_key"],
        unique=True,
        schema="hub",
        postgresql_where=sa.text("client_key IS NOT NULL"),
    )
    op.create_index("goals_state", "goals", ["state"], schema="hub")
    op.create_table(
        "goal_history",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column(
            "goal_id", sa.Text(), sa.ForeignKey("hub.goals.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("from_state", sa.Text()),
        sa.Column("to_state", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        _at("at"),
        schema="hub",
    )
    op.create_index("goal_history_goal", "goal_history", ["goal_id", "id"], schema="hub")
    op.create_table(
        "goal_tasks",
        sa.Column("task_id", sa.Text(), primary_key=True),
        sa.Column(
            "goal_id", sa.Text(), sa.ForeignKey("hub.goals.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("key", sa.Text(), nullable=False, unique=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("result", JSONB()),
        sa.Column("seen_at", sa.DateTime(timezone=True)),
        _at("updated_at"),
        schema="hub",
    )
    op.create_index("goal_tasks_goal", "goal_tasks", ["goal_id"], schema="hub")
    op.create_table(
        "verifications",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column(
            "goal_id", sa.Text(), sa.ForeignKey("hub.goals.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("report", JSONB(), nullable=False),
        _at("at"),
        schema="hub",
    )
    op.create_index(
        "verifications_goal", "verifications", ["goal_id", "round"], unique=True, schema="hub"
    )


def downgrade() -> None:
    for table in ("verifications", "goal_tasks", "goal_history", "goals"):
        op.drop_table(table, schema="hub")
