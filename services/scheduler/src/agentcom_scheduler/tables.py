"""SQLAlchemy Core tables of the `scheduler` schema; Alembic migrations follow this file."""

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from agentcom_common import outbox

metadata = MetaData(schema="scheduler")
outbox_table = outbox.define_table(metadata)

agents = Table(
    "agents",
    metadata,
    Column("id", Text, primary_key=True),
    Column("state", Text, nullable=False),
    Column("capabilities", ARRAY(Text), nullable=False),
    Column("repos", ARRAY(Text), nullable=False),
    Column("token_id", Text, nullable=False),
    Column("last_seen", DateTime(timezone=True)),  # its last report of any kind
    Column("last_beat", DateTime(timezone=True)),  # its last heartbeat or hello: presence
    Column("task_id", Text),  # the assignment it holds, if any
    Column("generation", Integer),
    Column("assigned_at", DateTime(timezone=True)),
    Column("deadline", DateTime(timezone=True)),  # the held assignment must be done by then
    Column("nats_secret_hash", Text),  # sha256 of its NATS password; checked by the auth callout
    Column("resources", JSONB),  # cpu/ram/vram/load/host of the last heartbeat
    Column("blocked_reason", Text),  # the sidecar's word while `blocked`
    Column("supervisor", Text),  # systemd, pm2, none...: from its last hello
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

Index(  # matching's read of idle agents by profile, longest idle first (fastpath.IDLE)
    "agents_idle",
    agents.c.capabilities,
    agents.c.repos,
    agents.c.updated_at,
    agents.c.id,
    postgresql_where=agents.c.state == "idle",
)

agent_history = Table(
    "agent_history",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("agent_id", Text, ForeignKey("scheduler.agents.id", ondelete="CASCADE"), index=True),
    Column("from_state", Text),
    Column("to_state", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

refusals = Table(  # tasks an agent rejected for good (PERMANENT_REJECTIONS); never offered again
    "refusals",
    metadata,
    Column(
        "agent_id",
        Text,
        ForeignKey("scheduler.agents.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("task_id", Text, primary_key=True),
    Column("code", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("refusals_task", "task_id"),
)
