"""Tasks, their dependencies and history, and the repo registry.

Created from the table objects as they stand at this revision; the next change to these tables
must be written out as explicit operations, never by editing this file.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

from agentcom_queue import tables

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TABLES = (tables.tasks, tables.task_deps, tables.task_history, tables.repos)


def upgrade() -> None:
    bind = op.get_bind()
    for table in _TABLES:
        table.create(bind)


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(_TABLES):
        table.drop(bind)
