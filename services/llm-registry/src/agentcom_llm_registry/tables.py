"""SQLAlchemy Core tables of the `llm` schema; Alembic migrations follow this file."""

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    func,
)

from agentcom_common import outbox

metadata = MetaData(schema="llm")
outbox_table = outbox.define_table(metadata)

endpoints = Table(
    "endpoints",
    metadata,
    Column("id", Text, primary_key=True),
    Column("provider", Text, nullable=False),  # ollama | openai | anthropic
    Column("base_url", Text, nullable=False),
    Column("api_key", Text),  # never logged, never returned by the API
    Column("classes", JSON, nullable=False),  # model classes this endpoint serves (routing)
    Column("models", JSON, nullable=False),  # models named by hand; discovery adds more
    Column("host", Text),  # joins sidecar heartbeats (host resources)
    Column("source", Text, nullable=False),  # manual | sidecar:<agent_id>
    Column("owner", Text),  # the agent it was learnt from (None: added by hand)
    Column("shared", Boolean, nullable=False, server_default="true"),  # usable by every caller
    Column("created_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
)

calls = Table(
    "calls",
    metadata,
    Column("id", Text, primary_key=True),  # uuid made at call time: a journal replay is idempotent
    Column("at", DateTime(timezone=True), nullable=False),
    Column("caller", Text, nullable=False),
    Column("caller_class", Text, nullable=False),  # agent | hub:<state>
    Column("goal_id", Text),
    Column("endpoint_id", Text),
    Column("model", Text),
    Column("tier", Text),
    Column("tokens_in", Integer, nullable=False),
    Column("tokens_out", Integer, nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("cost_usd", Float, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Index("calls_at_idx", "at"),
    Index("calls_class_at_idx", "caller_class", "at"),
)

# One row per budget ("agent:<id>", "goal:<id>", "hub:<state>"): what this window used, reserved
# calls included. The limits are the settings', written with every reservation so the one
# statement that reserves can compare against them (store.reserve).
budgets = Table(
    "budgets",
    metadata,
    Column("scope", Text, primary_key=True),
    Column("window_start", DateTime(timezone=True), nullable=False),
    Column("tokens", BigInteger, nullable=False),
    Column("usd", Float, nullable=False),
    Column("max_tokens", BigInteger),  # None: tokens not limited
    Column("max_usd", Float),  # None: money not limited
)

# A tier routed from the next tier's classes until `until` (the database's clock decides when
# it is over: replicas' clocks may differ). A row past its `until` is inert; the next fallback
# of its tier overwrites it.
tier_fallbacks = Table(
    "tier_fallbacks",
    metadata,
    Column("tier", Text, primary_key=True),
    Column("until", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("set_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
)
