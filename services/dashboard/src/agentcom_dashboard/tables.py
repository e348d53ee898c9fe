"""SQLAlchemy Core tables of the `dashboard` schema; Alembic migrations follow this file."""

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    func,
)

from agentcom_common import outbox

metadata = MetaData(schema="dashboard")
outbox_table = outbox.define_table(metadata)

# a login: the cookie holds a random secret; the row is keyed by its hash and keeps the user's
# bearer token encrypted with a key derived from that secret, so the table alone reveals nothing
sessions = Table(
    "sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("token_id", String(16), nullable=False),
    Column("role", String(16), nullable=False),
    Column("name", String(200), nullable=False),
    Column("sealed_token", LargeBinary, nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)

# one row: the VAPID key pair, made on first start
vapid_keys = Table(
    "vapid_keys",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("private_pem", Text, nullable=False),
    Column("public_key", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

push_subscriptions = Table(
    "push_subscriptions",
    metadata,
    Column("endpoint", Text, primary_key=True),
    Column("p256dh", Text, nullable=False),
    Column("auth", Text, nullable=False),
    Column("token_id", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# one row per rule: whether it is active, and when it last fired (cooldowns survive a restart);
# written in the same transaction as the alert event's outbox row
alerts = Table(
    "alerts",
    metadata,
    Column("rule_id", String(64), primary_key=True),
    Column("active", Boolean, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("message", Text, nullable=False),
    Column("details", JSON, nullable=False),
    Column("fired_at", DateTime(timezone=True), nullable=False),
    Column("acknowledged_by", String(200)),
)
