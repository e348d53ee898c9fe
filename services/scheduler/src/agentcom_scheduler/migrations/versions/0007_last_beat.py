"""When the agent's last heartbeat (or hello) was applied: silence is judged from it alone;
and the partial index matching reads idle agents by (profile, longest idle) through.

`last_seen` still moves with every report; a task outcome is not a heartbeat, so it no longer
postpones the offline decision (issue 5 measures detection from the last heartbeat).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("agents", sa.Column("last_beat", sa.DateTime(timezone=True)), schema="scheduler")
    op.execute("UPDATE scheduler.agents SET last_beat = last_seen")
    op.execute(
        "CREATE INDEX agents_idle ON scheduler.agents (capabilities, repos, updated_at, id) "
        "WHERE state = 'idle'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX scheduler.agents_idle")
    op.drop_column("agents", "last_beat", schema="scheduler")
