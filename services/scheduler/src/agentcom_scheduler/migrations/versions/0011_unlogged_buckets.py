"""Token buckets unlogged: a bucket is rewritten by every heartbeat batch and every hello, and
as a logged table each of those autocommitted takes waited for its own WAL flush (with fsync
on, the dearest part of a statement that is otherwise a few index lookups). A transaction that
writes only unlogged tables commits without waiting for the flush.

What it gives up: after a Postgres crash (not a clean restart, not a service restart) the
buckets are empty, so every agent starts from a full minute's budget, as a new agent does; a
standby does not have them either. Cut-offs and overrides stay logged: forgiving those would
matter.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE scheduler.rate_buckets SET UNLOGGED")


def downgrade() -> None:
    op.execute("ALTER TABLE scheduler.rate_buckets SET LOGGED")
