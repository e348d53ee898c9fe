"""Health and healing: the latest assessment, issues reported from outside it, healing runs
and their actions.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _at(name: str, *, default: bool = True) -> sa.Column[object]:
    if default:
        return sa.Column(
            name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        )
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def _json(name: str, default: str | None = None) -> sa.Column[object]:
    if default is None:
        return sa.Column(name, JSONB(), nullable=False)
    return sa.Column(name, JSONB(), nullable=False, server_default=sa.text(default))


def upgrade() -> None:
    op.create_table(
        "health",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("assessed_at", sa.DateTime(timezone=True)),
        _json("issues", "'[]'::jsonb"),
        _json("samples", "'[]'::jsonb"),
        schema="hub",
    )
    op.execute("INSERT INTO hub.health (id) VALUES ('hub')")  # the one row
    op.create_table(
        "health_reports",
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("severity", sa.Text(), nullable=False),
        sa.Column("category", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        _json("evidence"),
        _at("reported_at"),
        _at("expires_at", default=False),
        schema="hub",
    )
    op.create_table(
        "healing_runs",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False, unique=True),
        _at("started_at"),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        _json("issues"),
        sa.Column("report", sa.Text(), nullable=False, server_default=sa.text("''")),
        schema="hub",
    )
    op.create_table(
        "healing_actions",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column(
            "run_id",
            sa.BigInteger(),
            sa.ForeignKey("hub.healing_runs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("category", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        _json("evidence"),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        _at("at"),
        schema="hub",
    )
    op.create_index("healing_actions_run", "healing_actions", ["run_id", "id"], schema="hub")
    op.create_index(
        "healing_actions_target", "healing_actions", ["action", "target", "at"], schema="hub"
    )


def downgrade() -> None:
    for table in ("healing_actions", "healing_runs", "health_reports", "health"):
        op.drop_table(table, schema="hub")
