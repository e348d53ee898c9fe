"""Keep a repo's URL as given beside its key: `tasks.repo_url`, `repos.clone_url`.

The key (`repo_key`) drops `.git`, and a sidecar with no configured repos cloned the key: for
`/srv/calc.git` it asked git for `/srv/calc`, which git resolves to a sibling non-bare
`/srv/calc/` first, so the work was pushed to another repository. Rows from before keep NULL
and the sidecar falls back to the key, as it did. `IF NOT EXISTS`: revision 0002 builds the
tables from `tables.py`, which on a new database already declares them.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE queue.tasks ADD COLUMN IF NOT EXISTS repo_url text")
    op.execute("ALTER TABLE queue.repos ADD COLUMN IF NOT EXISTS clone_url text")


def downgrade() -> None:
    op.execute("ALTER TABLE queue.repos DROP COLUMN IF EXISTS clone_url")
    op.execute("ALTER TABLE queue.tasks DROP COLUMN IF EXISTS repo_url")
