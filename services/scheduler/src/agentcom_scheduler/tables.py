"""SQLAlchemy Core tables of the `scheduler` schema; Alembic migrations follow this file."""

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
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

# Rate limits and cut-offs (limits.py): rows, not process memory, so every replica draws from
# the same buckets and a restart forgives nothing. No foreign key: a report or a call may name
# an agent id before (or after) its row exists, and must still be counted.
rate_buckets = Table(  # one token bucket per agent and tier; unlogged (migration 0011)
    "rate_buckets",
    metadata,
    Column("agent_id", Text, primary_key=True),
    Column("tier", Text, primary_key=True),
    Column("per_minute", Float, nullable=False),  # the rate it was last filled at
    Column("tokens", Float, nullable=False),
    Column("granted", Integer, nullable=False),  # how many the last take got (its answer)
    Column("stamp", DateTime(timezone=True), nullable=False),  # Postgres's clock, every replica's
    prefixes=["UNLOGGED"],
)

rate_overrides = Table(  # an admin's per-minute rates for one agent (NULL: the setting)
    "rate_overrides",
    metadata,
    Column("agent_id", Text, primary_key=True),
    Column("light", Integer),
    Column("normal", Integer),
    Column("heavy", Integer),
)

cutoffs = Table(  # malformed reports in the window, and the cut-off they led to
    "cutoffs",
    metadata,
    Column("agent_id", Text, primary_key=True),
    Column("violations", ARRAY(DateTime(timezone=True)), nullable=False),
    Column("cut_offs", Integer, nullable=False),  # cut-offs so far: the next one lasts longer
    Column("blocked_until", DateTime(timezone=True)),
)
