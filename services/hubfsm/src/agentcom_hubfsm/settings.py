"""Hub settings: the common ones plus the hub's own, prefixed `AGENTCOM_HUB_`."""

from datetime import timedelta
from pathlib import Path

from pydantic import Field

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
