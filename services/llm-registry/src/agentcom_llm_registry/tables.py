"""SQLAlchemy Core tables of the `llm` schema; Alembic migrations follow this file."""

from sqlalchemy import MetaData

from agentcom_common import outbox

metadata = MetaData(schema="llm")
outbox_table = outbox.define_table(metadata)
