"""Hub settings: the common ones plus the hub's own, prefixed `AGENTCOM_HUB_`."""

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from agentcom_common.settings import CommonSettings, Interval


class HubSettings(CommonSettings):
    hub_goal_sweep: Interval = Field(
        default=timedelta(seconds=5),
        description="How often the goal driver looks for goals to plan, submit or verify when "
        "no event woke it (events wake it sooner; the sweep guarantees progress).",
    )
    hub_verify_retries: int = Field(
        default=2,
        ge=0,
        le=10,
        description="Rounds of follow-up tasks a goal gets for gaps its verification found; "
        "past them the goal goes to `needs_review`.",
    )
    hub_replans: int = Field(
        default=1,
        ge=0,
        le=5,
        description="Times a goal is re-planned when one of its tasks dead-letters; past it "
        "the goal fails with the task named.",
    )
    hub_llm_timeout: Interval = Field(
        default=timedelta(seconds=300),
        description="How long one planning or verification call to the gateway may take.",
    )
    hub_llm_backoff: Interval = Field(
        default=timedelta(seconds=5),
        description="First delay before a planning or verification call the gateway could not "
        "answer is tried again; it doubles up to ten times this.",
    )
    hub_plan_format: Literal["json", "xml"] = Field(
        default="json",
        description="The shape the planner asks models to answer in: a JSON object, or the "
        "`<plan>` XML document (for models that follow XML structure better). Either reply "
        "is read into the same plan.",
    )
    hub_data_dir: Path = Field(
        default=Path(".agentcom/hub"),
        description="Where the hub keeps its read-only clones of registered repos.",
    )
    hub_tick_interval: Interval = Field(
        default=timedelta(seconds=1),
        description="How often the hub brain gathers its signals and applies its rules when "
        "nothing woke it sooner (a goal event or a pause/resume/start/stop does).",
    )
    hub_global_watchdog: Interval = Field(
        default=timedelta(hours=2),
        description="How long the hub may stay in any state but resting without moving; past "
        "it the brain forces resting and publishes a critical `hub.watchdog_fired`.",
    )
    hub_leader_interval: Interval = Field(
        default=timedelta(seconds=1),
        description="How often each replica tries for the brain's leader lock and the active "
        "one checks it still holds it; one brain acts per deployment, and a replica takes "
        "over about four of these after the active one's process dies.",
    )
    hub_github_webhook_secret: SecretStr | None = Field(
        default=None,
        description="The secret every GitHub webhook is signed with (`X-Hub-Signature-256`), "
        "unless its repo has its own in `hub_github_webhook_secrets`; with neither, every "
        "delivery is refused (403 `webhook_secret_unset`).",
    )
    hub_github_webhook_secrets: dict[str, SecretStr] = Field(
        default_factory=dict[str, SecretStr],
        description='Per-repo webhook secrets, by the repo\'s full name: {"acme/widgets": "..."} '
        "(JSON); a repo named here is checked against its own secret only.",
    )
    hub_github_webhook_max_body: int = Field(
        default=2 * 1024 * 1024,
        ge=1024,
        le=25 * 1024 * 1024,
        description="Largest webhook body in bytes; a larger one is refused (413) and recorded. "
        "Above `AGENTCOM_HTTP_MAX_BODY` the service's own limit refuses it first, unrecorded.",
    )
    hub_github_api_url: str = Field(
        default="https://api.github.com",
        description="GitHub's REST API, where the hub reads a failing job's log and a pull "
        "request's review comments.",
    )
    hub_github_token: SecretStr | None = Field(
        default=None,
        description="Token the hub reads GitHub's API with (job logs, review comments); "
        "without it the reads go unauthenticated (public repos only).",
    )
    hub_github_goal_label: str = Field(
        default="agentcom",
        min_length=1,
        max_length=100,
        description="An issue given this label becomes a goal (source `github`, linked back).",
    )
    hub_github_log_tail: int = Field(
        default=60,
        ge=1,
        le=1000,
        description="Lines of a failing job's log carried into the follow-up task.",
    )
    hub_pr_feedback_rounds: int = Field(
        default=3,
        ge=0,
        le=20,
        description="Follow-up rounds one pull request gets from its checks, reviews and "
        "conflicts; the next one sends its goal to `needs_review` and notifies a person.",
    )
    hub_health_interval: Interval = Field(
        default=timedelta(seconds=30),
        description="How often the hub assesses the running system's health (queue, scheduler, "
        "llm-registry, their readiness) for `GET /api/hub/health` and the healing rule.",
    )
    hub_health_timeout: Interval = Field(
        default=timedelta(seconds=5),
        description="How long one health question to another service may take; past it the "
        "service counts as degraded.",
    )
    hub_stuck_task_after: Interval = Field(
        default=timedelta(minutes=5),
        description="A task assigned or working with no change for this long is stuck.",
    )
    hub_stuck_tasks_critical: int = Field(
        default=3,
        ge=1,
        le=1000,
        description="Stuck tasks from this many on are a critical issue (fewer: a warning).",
    )
    hub_failure_rate_pct: float = Field(
        default=50.0,
        gt=0,
        le=100,
        description="Tasks that ended in the failure window failing (dead-lettered) above this "
        "percentage is a `high_failure_rate` warning.",
    )
    hub_failure_window: Interval = Field(
        default=timedelta(minutes=10),
        description="The window the failure rate and the queue's growth are measured over.",
    )
    hub_failure_min_tasks: int = Field(
        default=5,
        ge=1,
        le=100_000,
        description="Tasks that must have ended in the failure window before its failure rate "
        "counts (two failures of two are no trend).",
    )
    hub_backlog_checks: int = Field(
        default=3,
        ge=2,
        le=100,
        description="Assessments in a row the queued count must rise, with no idle agent, to "
        "be a `queue_backlog` warning.",
    )
    hub_healing_cooldown: Interval = Field(
        default=timedelta(minutes=5),
        description="After a healing run ends, how long before critical issues may start another.",
    )
    hub_healing_attempts: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Healing runs allowed in `hub_healing_window`; past them critical issues "
        "wait (for a person, or for the window to pass).",
    )
    hub_healing_window: Interval = Field(
        default=timedelta(minutes=10),
        description="The window `hub_healing_attempts` counts runs in; also how often one "
        "remedy may act on one target (the same task, agent or tier).",
    )
    hub_healing_watchdog: Interval = Field(
        default=timedelta(minutes=5),
        description="How long one healing run may take; past it the brain forces resting, "
        "records the run as `watchdog` and publishes a critical `hub.watchdog_fired`.",
    )
    hub_healing_dry_run: bool = Field(
        default=False,
        description="Healing runs decide and record what each remedy would do, and do none of it.",
    )
    hub_healing_reprobe_backoff: tuple[Interval, ...] = Field(
        default=(timedelta(seconds=5), timedelta(seconds=15), timedelta(seconds=45)),
        min_length=1,
        max_length=10,
        description="Waits before each re-probe of a tier's dead endpoints (JSON list); when "
        "no probe brings one back, the tier is routed to its fallback.",
    )
    hub_healing_fallback_for: Interval = Field(
        default=timedelta(minutes=30),
        description="How long a tier whose endpoints stayed dead is routed to the next tier's "
        "model classes.",
    )
    hub_improving_enabled: bool = Field(
        default=False,
        description="Improvement scans when the hub has no goals: each repo "
        "(`hub_improving_repos`) is scanned by a task on an agent whose config lists the "
        "`scan` executor and which has `hub_improving_capability`; off: never.",
    )
    hub_improving_repos: list[str] = Field(
        default_factory=list[str],
        description="The repos improvement scans look at (JSON list); empty: "
        "`hub_contemplation_repos`, else the repos of the hub's goals.",
    )
    hub_improving_capability: str = Field(
        default="scan",
        max_length=64,
        description="The capability a scan task needs (agents registered with it claim it); "
        "empty: any agent.",
    )
    hub_improving_interval: Interval = Field(
        default=timedelta(days=1),
        description="Least time between two improving cycles, counted from the end of the last.",
    )
    hub_improving_scan_timeout: Interval = Field(
        default=timedelta(minutes=30),
        description="How long a cycle waits for its scan tasks; a repo whose scan has not "
        "ended by then is left out of the cycle (its report says so).",
    )
    hub_improving_max_goals: int = Field(
        default=5,
        ge=1,
        le=50,
        description="Findings one cycle turns into goals at most, highest severity first.",
    )
    hub_improving_fingerprint_cooldown: Interval = Field(
        default=timedelta(days=7),
        description="A finding whose fingerprint was kept this recently is dropped.",
    )
    hub_improving_file_cooldown: Interval = Field(
        default=timedelta(days=1),
        description="A finding touching a file a kept finding touched this recently (this "
        "cycle too) is dropped: one change per file at a time.",
    )
    hub_improving_oscillation_window: int = Field(
        default=10,
        ge=0,
        le=200,
        description="How many of the repo's last kept findings a new one may not undo "
        "(add/remove, extract/inline, increase/decrease, enable/disable, split/merge).",
    )
    hub_improving_review: bool = Field(
        default=False,
        description="Each improving cycle also asks a model (through the gateway, charged to "
        "the `improving` budget) to review each repo's recent diff; its findings go through "
        "the same filters as the scanners'. Off: no model call.",
    )
    hub_improving_review_commits: int = Field(
        default=5,
        ge=1,
        le=100,
        description="How many of the repo's latest commits the review reads.",
    )
    hub_improving_review_max_chars: int = Field(
        default=40_000,
        ge=1_000,
        le=400_000,
        description="The diff the review sends is cut to this many characters.",
    )
    hub_contemplation_interval: Interval = Field(
        default=timedelta(days=1),
        description="Least time between two contemplation cycles, counted from the end of "
        "the last (from the hub's first start before the first); a cycle also waits while "
        "`hub_contemplation_max_proposals` proposals are pending.",
    )
    hub_contemplation_max_proposals: int = Field(
        default=3,
        ge=1,
        le=3,
        description="Proposals one contemplation cycle keeps at most (the model is asked for "
        "this many; more are dropped).",
    )
    hub_contemplation_repos: list[str] = Field(
        default_factory=list[str],
        description="The repos contemplation thinks about (JSON list), the least recently "
        "contemplated first; empty: the repos of the hub's goals.",
    )
    hub_contemplation_out_of_scope: list[str] = Field(
        default_factory=list[str],
        description="Topics no proposal may touch (JSON list), told to the model and "
        "enforced: a proposal naming one is dropped. Added to the repo's own list "
        "(`hub_contemplation_out_of_scope_file`).",
    )
    hub_contemplation_out_of_scope_file: str = Field(
        default=".agentcom/out-of-scope.txt",
        description="A file in the contemplated repo listing more out-of-scope topics, one a "
        "line (`#` starts a comment); missing is fine.",
    )
    hub_contemplation_history: int = Field(
        default=20,
        ge=1,
        le=200,
        description="How many recent hub moves, failed goals, healing runs and rejected "
        "proposals the contemplation prompt shows (each).",
    )
