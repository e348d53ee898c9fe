"""Agents' repos stored as repo keys (`agentcom_common.repos.repo_key`: no trailing `/` or
`.git`), as the queue stores a task's repo, so `--repo /srv/app.git` matches its tasks; and the
refusals table: tasks an agent rejected for a reason its configuration will not change.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # the SQL spelling of repo_key: trim, drop trailing slashes, then one trailing .git
    op.execute(
        "UPDATE scheduler.agents SET repos = ARRAY("
        "  SELECT regexp_replace(rtrim(btrim(r), '/'), '\\.git$', '') FROM unnest(repos) r)"
        " WHERE EXISTS (SELECT 1 FROM unnest(repos) r"
        "  WHERE r <> regexp_replace(rtrim(btrim(r), '/'), '\\.git$', ''))"
    )
    op.create_table(
        "refusals",
        sa.Column(
            "agent_id",
            sa.Text,
            sa.ForeignKey("scheduler.agents.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("task_id", sa.Text, primary_key=True),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema="scheduler",
    )
    op.create_index("refusals_task", "refusals", ["task_id"], schema="scheduler")


def downgrade() -> None:
    op.drop_table("refusals", schema="scheduler")
