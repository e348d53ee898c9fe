"""SQLAlchemy Core tables of the `queue` schema; Alembic migrations follow this file."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from agentcom_common import outbox

metadata = MetaData(schema="queue")
outbox_table = outbox.define_table(metadata)

tasks = Table(
    "tasks",
    metadata,
    Column("id", Text, primary_key=True),
    # FIFO inside a lane: an ever-increasing number, reset to a fresh one on each requeue
    Column("seq", BigInteger, Identity(), nullable=False),
    Column("client_key", Text),
    Column("state", Text, nullable=False),
    Column("lane", SmallInteger, nullable=False),  # 0 urgent … 3 low
    Column("description", Text, nullable=False),
    Column("generation", Integer, nullable=False, server_default="0"),
    Column("retry_count", Integer, nullable=False, server_default="0"),
    Column("max_retries", Integer, nullable=False),
    Column("assigned_to", Text),
    Column("assigned_at", DateTime(timezone=True)),
    Column("not_before", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("complete_by", DateTime(timezone=True)),
    Column("needed_capabilities", ARRAY(Text), nullable=False),
    Column("repo", Text),  # the repo key (`agentcom_common.repos.repo_key`): what matching compares
    # the URL as submitted, which is what a sidecar with no configured repos clones: the key drops
    # `.git`, and git asked for `/srv/calc` may find a sibling non-bare `/srv/calc/` first
    Column("repo_url", Text),
    Column("branch", Text),
    Column("file_hints", JSONB, nullable=False),
    Column("success_criteria", JSONB, nullable=False),
    Column("verification_steps", JSONB, nullable=False),
    Column("complexity", JSONB, nullable=False),
    Column("depends_on", ARRAY(Text), nullable=False),
    Column("goal_id", Text),
    Column("metadata", JSONB, nullable=False),
    Column("submitted_by", Text, nullable=False),
    Column("last_error", Text),
    Column("blocked_reason", Text),
    Column("result", JSONB),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # the claim query's ORDER BY, only over claimable rows: claims stay O(log n) at any size
    Index("tasks_claim", "lane", "seq", postgresql_where=text("state = 'queued'")),
    Index("tasks_state", "state"),
    # partial: most tasks have neither, and every non-HOT update of a task (each transition)
    # would otherwise add an entry for NULL to both (migration 0003)
    Index(
        "tasks_client_key",
        "client_key",
        unique=True,
        postgresql_where=text("client_key IS NOT NULL"),
    ),
    Index("tasks_goal", "goal_id", postgresql_where=text("goal_id IS NOT NULL")),
)
# the queued tasks that prefer an agent (a pull request's follow-up names the agent that did the
# work): matching offers them to that agent first (`store_batch.CLAIM_AGENTS_SQL`); most tasks
# prefer none, so the index holds only those that do (migration 0004)
Index(
    "tasks_preferred",
    tasks.c.metadata["prefer_agent"].astext,
    postgresql_where=text("state = 'queued' AND (metadata->>'prefer_agent') IS NOT NULL"),
)

task_deps = Table(
    "task_deps",
    metadata,
    Column("task_id", Text, ForeignKey("queue.tasks.id"), primary_key=True),
    Column("depends_on", Text, ForeignKey("queue.tasks.id"), primary_key=True),
    Index("task_deps_reverse", "depends_on"),
)

task_history = Table(
    "task_history",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("task_id", Text, ForeignKey("queue.tasks.id"), nullable=False, index=True),
    Column("from_state", Text),
    Column("to_state", Text, nullable=False),
    Column("generation", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

repos = Table(
    "repos",
    metadata,
    Column("url", Text, primary_key=True),  # the repo key
    Column("clone_url", Text),  # the URL as added; tasks that inherit this repo carry it
    Column("position", Integer, nullable=False),
    Column("paused", Boolean, nullable=False, server_default="false"),
    Column("added_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
