"""SQLAlchemy Core tables of the `hub` schema; Alembic migrations follow this file."""

from sqlalchemy import MetaData

from agentcom_common import outbox

metadata = MetaData(schema="hub")
outbox_table = outbox.define_table(metadata)
