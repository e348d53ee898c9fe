"""Partial indexes for `client_key` and `goal_id`: most tasks have neither.

Every transition updates its task, and no such update is HOT (`state` is indexed), so each one
inserted an entry for a NULL key into both indexes. `IF [NOT] EXISTS`: revision 0002 builds
the tables from `tables.py`, which on a new database already declares these indexes.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE queue.tasks DROP CONSTRAINT IF EXISTS tasks_client_key_key")
    op.execute(
        "CREATE UNIQUE INDEX IF NOT EXISTS tasks_client_key ON queue.tasks (client_key) "
        "WHERE client_key IS NOT NULL"
    )
    op.execute("DROP INDEX IF EXISTS queue.tasks_goal")
    op.execute("CREATE INDEX tasks_goal ON queue.tasks (goal_id) WHERE goal_id IS NOT NULL")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS queue.tasks_client_key")
    op.execute("ALTER TABLE queue.tasks ADD CONSTRAINT tasks_client_key_key UNIQUE (client_key)")
    op.execute("DROP INDEX IF EXISTS queue.tasks_goal")
    op.execute("CREATE INDEX tasks_goal ON queue.tasks (goal_id)")
