"""SQLAlchemy Core tables of the `hub` schema; Alembic migrations follow this file."""

from sqlalchemy import (
    BigInteger,
    Boolean,
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
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from agentcom_common import outbox

metadata = MetaData(schema="hub")
outbox_table = outbox.define_table(metadata)

goals = Table(
    "goals",
    metadata,
    Column("id", Text, primary_key=True),
    Column("seq", BigInteger, Identity(), nullable=False, unique=True),  # paging order
    Column("state", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("success_criteria", JSONB, nullable=False),
    Column("repo", Text, nullable=False),
    Column("priority", Text, nullable=False),
    Column("budget_tokens", BigInteger),
    Column("budget_usd", Float),
    Column("autonomy", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("client_key", Text),
    Column("attempt", Integer, nullable=False, server_default=text("0")),
    Column("verify_round", Integer, nullable=False, server_default=text("0")),
    Column("replans", Integer, nullable=False, server_default=text("0")),
    Column("reason", Text, nullable=False, server_default=text("''")),
    Column("plan", JSONB),
    Column("plan_errors", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    # what the next plan must know: a person's rejection of a plan, a task that was lost
    Column("feedback", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("cost_tokens", BigInteger, nullable=False, server_default=text("0")),
    Column("cost_usd", Float, nullable=False, server_default=text("0")),
    # when the driver may next try this goal's pending step (a model call that failed waits)
    Column("not_before", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("failures", Integer, nullable=False, server_default=text("0")),
    Column("link", Text),  # where the goal came from (a GitHub issue's page)
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index(
        "goals_client_key",
        "client_key",
        unique=True,
        postgresql_where=text("client_key IS NOT NULL"),
    ),
    Index("goals_state", "state"),
)

goal_history = Table(
    "goal_history",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("goal_id", Text, ForeignKey("hub.goals.id", ondelete="CASCADE"), nullable=False),
    Column("from_state", Text),
    Column("to_state", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("goal_history_goal", "goal_id", "id"),
)

goal_tasks = Table(
    "goal_tasks",
    metadata,
    Column("task_id", Text, primary_key=True),
    Column("goal_id", Text, ForeignKey("hub.goals.id", ondelete="CASCADE"), nullable=False),
    Column("key", Text, nullable=False, unique=True),  # the client_key it was submitted with
    Column("attempt", Integer, nullable=False),
    Column("title", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("result", JSONB),
    Column("seen_at", DateTime(timezone=True)),  # of the task event its state came from
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("goal_tasks_goal", "goal_id"),
)

verifications = Table(
    "verifications",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("goal_id", Text, ForeignKey("hub.goals.id", ondelete="CASCADE"), nullable=False),
    Column("round", Integer, nullable=False),
    Column("passed", Boolean, nullable=False),
    Column("report", JSONB, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("verifications_goal", "goal_id", "round", unique=True),
)

# The hub brain: exactly one row (id 'hub', made by migration 0003), moved only through
# `brain.store` (the common transition writer). Every field of the brain lives here, so a
# restarted or newly elected brain resumes where the last one was.
hub = Table(
    "hub",
    metadata,
    Column("id", Text, primary_key=True),
    Column("state", Text, nullable=False),
    Column("paused", Boolean, nullable=False, server_default=text("false")),
    Column("cycle", BigInteger, nullable=False, server_default=text("0")),
    Column("reason", Text, nullable=False, server_default=text("''")),
    Column("entered_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # the global watchdog's deadline; NULL while resting (nothing to wait for there)
    Column("watchdog_at", DateTime(timezone=True)),
    # seconds spent in each state before the current stay: {"executing": 12.5, ...}
    Column("seconds", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("work", Text),  # the entry work running now, by name
    Column("leader", Text),  # host:pid of the active brain
    Column("leader_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

hub_history = Table(
    "hub_history",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("hub_id", Text, ForeignKey("hub.hub.id", ondelete="CASCADE"), nullable=False),
    Column("from_state", Text),
    Column("to_state", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Every GitHub webhook delivery that reached the route, refused ones too: what came, what was
# done and why. `accepted` marks the one delivery per `X-GitHub-Delivery` that was acted on;
# the partial unique index is what refuses a replay, even from two replicas at once.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("delivery", Text),
    Column("event", Text),
    Column("action", Text),
    Column("repo", Text),
    Column("accepted", Boolean, nullable=False),
    Column("status", Integer, nullable=False),  # the HTTP status answered
    Column("outcome", Text, nullable=False),  # acted | ignored | refused | failed
    Column("reason", Text, nullable=False),
    Column("done", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index(
        "webhook_deliveries_once",
        "delivery",
        unique=True,
        postgresql_where=text("accepted"),
    ),
)

# Pull requests our goals' tasks opened, as GitHub events told of them; `rounds` counts the
# follow-ups their checks, reviews and conflicts caused (never reset: see `webhooks.feedback`).
pull_requests = Table(
    "pull_requests",
    metadata,
    Column("repo", Text, primary_key=True),  # GitHub's full name, owner/name
    Column("number", Integer, primary_key=True),
    Column("url", Text, nullable=False),
    Column("branch", Text, nullable=False),
    Column("base", Text, nullable=False),
    Column("goal_id", Text, ForeignKey("hub.goals.id", ondelete="CASCADE"), nullable=False),
    Column("task_id", Text, nullable=False),  # the task whose branch it is
    Column("agent_id", Text, nullable=False),  # the agent that did that task
    Column("state", Text, nullable=False),  # open | closed | merged
    Column("rounds", Integer, nullable=False, server_default=text("0")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("pull_requests_goal", "goal_id"),
    Index("pull_requests_branch", "branch"),
)

# One row per feedback round of a pull request: what GitHub said, the context carried, and the
# follow-up task made (none once the rounds are used up: `escalated`). `cause` keys a round to
# what caused it (a commit's failed checks, one review), so a second failed job on the same
# commit or a redelivered review makes no second round.
pr_rounds = Table(
    "pr_rounds",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("repo", Text, nullable=False),
    Column("number", Integer, nullable=False),
    Column("round", Integer, nullable=False),
    Column("kind", Text, nullable=False),  # check_failed | changes_requested | merge_conflict
    Column("cause", Text, nullable=False),
    Column("goal_id", Text, ForeignKey("hub.goals.id", ondelete="CASCADE"), nullable=False),
    Column("task_id", Text),
    Column("escalated", Boolean, nullable=False),
    Column("summary", Text, nullable=False),
    Column("context", Text, nullable=False),  # the log tail, the comments, the files
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("pr_rounds_cause", "repo", "number", "kind", "cause", unique=True),
    Index("pr_rounds_goal", "goal_id", "id"),
)

# CI failing on a repo's default branch: the healing signal GitHub events give (read by the
# hub's health assessment; published as `agentcom.evt.github.ci_failed` too).
ci_failures = Table(
    "ci_failures",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("repo", Text, nullable=False),
    Column("branch", Text, nullable=False),
    Column("sha", Text, nullable=False),
    Column("check", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("log_tail", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ci_failures_once", "repo", "sha", "check", unique=True),
)

# Health: the latest assessment (one row, id 'hub', written by the health monitor), and the
# issues other parts of the hub report from outside the assessment (a failing default branch
# from a GitHub event, a merge conflict from a delivery): `health.reports.report_issue`.
health = Table(
    "health",
    metadata,
    Column("id", Text, primary_key=True),
    Column("assessed_at", DateTime(timezone=True)),
    Column("issues", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    # what the next assessment compares with: queued counts and ended-task totals over time
    Column("samples", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
)

health_reports = Table(
    "health_reports",
    metadata,
    Column("key", Text, primary_key=True),  # a second report with the key replaces the first
    Column("source", Text, nullable=False),
    Column("severity", Text, nullable=False),
    Column("category", Text, nullable=False),
    Column("summary", Text, nullable=False),
    Column("evidence", JSONB, nullable=False),
    Column("reported_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),  # then it no longer counts
)

# Healing: one run per stay in `healing` (keyed by the stay's `entered_at`, so a restarted or
# new brain resumes the run it finds instead of starting a second), and every remedy applied.
healing_runs = Table(
    "healing_runs",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("entered_at", DateTime(timezone=True), nullable=False, unique=True),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("ended_at", DateTime(timezone=True)),
    Column("outcome", Text, nullable=False),
    Column("dry_run", Boolean, nullable=False),
    Column("issues", JSONB, nullable=False),
    Column("report", Text, nullable=False, server_default=text("''")),
)

healing_actions = Table(
    "healing_actions",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column(
        "run_id", BigInteger, ForeignKey("hub.healing_runs.id", ondelete="CASCADE"), nullable=False
    ),
    Column("category", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("evidence", JSONB, nullable=False),
    Column("dry_run", Boolean, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("healing_actions_run", "run_id", "id"),
    Index("healing_actions_target", "action", "target", "at"),  # the per-target rate limit
)
# Contemplation: one row per cycle (keyed by the contemplating stay, so a restarted brain finds
# its cycle), and the proposals it made, which wait for a person (`contemplation.store`).
contemplations = Table(
    "contemplations",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("entered_at", DateTime(timezone=True), nullable=False, unique=True),
    Column("repo", Text),
    Column("outcome", Text),  # proposed | nothing | failed | interrupted; NULL while running
    Column("report", Text, nullable=False, server_default=text("''")),
    Column("analysis", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("ended_at", DateTime(timezone=True)),
)
proposals = Table(
    "proposals",
    metadata,
    Column("id", Text, primary_key=True),
    Column("seq", BigInteger, Identity(), nullable=False, unique=True),  # paging order
    Column(
        "cycle",
        BigInteger,
        ForeignKey("hub.contemplations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("state", Text, nullable=False),
    Column("repo", Text, nullable=False),
    Column("draft", JSONB, nullable=False),  # the `ProposalDraft` as the model wrote it
    Column("reason", Text, nullable=False, server_default=text("''")),
    Column("decided_by", Text),
    Column("decided_at", DateTime(timezone=True)),
    Column("goal_id", Text, ForeignKey("hub.goals.id", ondelete="SET NULL")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("proposals_state", "state", "seq"),
)
# Improvement scanning: one row per cycle (keyed by the improving stay), the scan tasks it
# submitted, and every finding with whether it was kept (a goal) and why (`improving.store`).
improvements = Table(
    "improvements",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("entered_at", DateTime(timezone=True), nullable=False, unique=True),
    Column("tasks", JSONB, nullable=False, server_default=text("'{}'::jsonb")),  # repo -> task
    Column("outcome", Text),  # kept | nothing | failed | interrupted; NULL while running
    Column("report", Text, nullable=False, server_default=text("''")),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("ended_at", DateTime(timezone=True)),
    Column("summary", JSONB, nullable=False, server_default=text("'{}'::jsonb")),  # CycleSummary
)
findings = Table(
    "findings",
    metadata,
    Column("id", Text, primary_key=True),
    Column("seq", BigInteger, Identity(), nullable=False, unique=True),  # paging order
    Column(
        "cycle", BigInteger, ForeignKey("hub.improvements.id", ondelete="CASCADE"), nullable=False
    ),
    Column("repo", Text, nullable=False),
    Column("fingerprint", Text, nullable=False),
    Column("finding", JSONB, nullable=False),  # the ScanFinding as the agent reported it
    Column("files", JSONB, nullable=False),  # normalised, for the per-file cooldown
    Column("kept", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("goal_id", Text, ForeignKey("hub.goals.id", ondelete="SET NULL")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("findings_repo", "repo", "kept", "seq"),
    Index("findings_fingerprint", "fingerprint", "seq"),
)
