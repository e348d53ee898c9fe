"""GitHub webhooks: every delivery, the pull requests our tasks opened and their feedback
rounds, CI failures on default branches, and a goal's link back to where it came from.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _at(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def _goal() -> sa.Column[object]:
    return sa.Column(
        "goal_id", sa.Text(), sa.ForeignKey("hub.goals.id", ondelete="CASCADE"), nullable=False
    )


def upgrade() -> None:
    op.add_column("goals", sa.Column("link", sa.Text()), schema="hub")
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("delivery", sa.Text()),
        sa.Column("event", sa.Text()),
        sa.Column("action", sa.Text()),
        sa.Column("repo", sa.Text()),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("done", JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")),
        _at("received_at"),
        schema="hub",
    )
    op.create_index(
        "webhook_deliveries_once",
        "webhook_deliveries",
        ["delivery"],
        unique=True,
        schema="hub",
        postgresql_where=sa.text("accepted"),
    )
    op.create_table(
        "pull_requests",
        sa.Column("repo", sa.Text(), primary_key=True),
        sa.Column("number", sa.Integer(), primary_key=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("branch", sa.Text(), nullable=False),
        sa.Column("base", sa.Text(), nullable=False),
        _goal(),
        sa.Column("task_id", sa.Text(), nullable=False),
        sa.Column("agent_id", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("rounds", sa.Integer(), nullable=False, server_default=sa.text("0")),
        _at("created_at"),
        _at("updated_at"),
        schema="hub",
    )
    op.create_index("pull_requests_goal", "pull_requests", ["goal_id"], schema="hub")
    op.create_index("pull_requests_branch", "pull_requests", ["branch"], schema="hub")
    op.create_table(
        "pr_rounds",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("repo", sa.Text(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("cause", sa.Text(), nullable=False),
        _goal(),
        sa.Column("task_id", sa.Text()),
        sa.Column("escalated", sa.Boolean(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("context", sa.Text(), nullable=False),
        _at("at"),
        schema="hub",
    )
    op.create_index(
        "pr_rounds_cause",
        "pr_rounds",
        ["repo", "number", "kind", "cause"],
        unique=True,
        schema="hub",
    )
    op.create_index("pr_rounds_goal", "pr_rounds", ["goal_id", "id"], schema="hub")
    op.create_table(
        "ci_failures",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("repo", sa.Text(), nullable=False),
        sa.Column("branch", sa.Text(), nullable=False),
        sa.Column("sha", sa.Text(), nullable=False),
        sa.Column("check", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("log_tail", sa.Text(), nullable=False),
        _at("at"),
        schema="hub",
    )
    op.create_index(
        "ci_failures_once", "ci_failures", ["repo", "sha", "check"], unique=True, schema="hub"
    )


def downgrade() -> None:
    for table in ("ci_failures", "pr_rounds", "pull_requests", "webhook_deliveries"):
        op.drop_table(table, schema="hub")
    op.drop_column("goals", "link", schema="hub")
