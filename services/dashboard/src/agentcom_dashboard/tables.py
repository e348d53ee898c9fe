"""SQLAlchemy Core tables of the `dashboard` schema; Alembic migrations follow this file."""

from sqlalchemy import MetaData

from agentcom_common import outbox

metadata = MetaData(schema="dashboard")
outbox_table = outbox.define_table(metadata)
