"""SQLAlchemy Core tables of the `queue` schema; Alembic migrations follow this file."""

from sqlalchemy import MetaData

from agentcom_common import outbox

metadata = MetaData(schema="queue")
outbox_table = outbox.define_table(metadata)
