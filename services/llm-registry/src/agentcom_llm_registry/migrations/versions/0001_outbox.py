"""The llm schema's transactional outbox.

Revision ID: 0001
Revises:
"""

from alembic import op

from agentcom_common import migrations

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    migrations.create_outbox("llm")


def downgrade() -> None:
    op.drop_table("outbox", schema="llm")
