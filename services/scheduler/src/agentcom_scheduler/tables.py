"""SQLAlchemy Core tables of the `scheduler` schema; Alembic migrations follow this file."""

from sqlalchemy import MetaData

from agentcom_common import outbox

metadata = MetaData(schema="scheduler")
outbox_table = outbox.define_table(metadata)
