"""The queue's instruments: tasks submitted, assigned and finished (by lane and end state), how
long they waited for an agent and ran on one, and the tasks by state and lane now.

Counters and histograms are recorded by the ops after their statement returned, from the rows
it returned: a dictionary add per batch and a histogram record per task, never a query. The
counts by state and lane are sampled from Postgres (`sample`), so they are right however many
replicas moved the tasks. Made at import like a logger: OTel proxies them until the process's
provider is installed (`agentcom_common.metering`).
"""

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final

from agentcom_common import clock, metering
from agentcom_common.contracts.task import Lane
from agentcom_common.service import Resources
from agentcom_queue import states, store

_LANES: Final = [lane.value for lane in Lane]
_m = metering.meter("agentcom.queue")

submitted = _m.create_counter(
    "agentcom.tasks.submitted", unit="{task}", description="Tasks created, by lane."
)
assigned = _m.create_counter(
    "agentcom.tasks.assigned",
    unit="{task}",
    description="Assignments of a task to an agent (a retried task is assigned again), by lane.",
)
finished = _m.create_counter(
    "agentcom.tasks.finished",
    unit="{task}",
    description="Tasks that reached an end state (completed, partial_pass, dead_letter, "
    "cancelled), by state and lane.",
)
wait = _m.create_histogram(
    "agentcom.task.wait.duration",
    unit="s",
    description="Submit to assignment, by lane (a retried task counts from its submit).",
    explicit_bucket_boundaries_advisory=metering.SECONDS_BUCKETS,
)
run = _m.create_histogram(
    "agentcom.task.run.duration",
    unit="s",
    description="Assignment to the agent's final report of that attempt, by outcome and lane.",
    explicit_bucket_boundaries_advisory=metering.SECONDS_BUCKETS,
)
claim = _m.create_histogram(
    "agentcom.queue.claim.duration",
    unit="s",
    description="One claim statement, from taking a connection to its rows (claim: one agent; "
    "claim_agents: several alike), by kind and whether it found a task.",
    explicit_bucket_boundaries_advisory=metering.FAST_SECONDS_BUCKETS,
)
tasks = metering.Sampled(
    _m, "agentcom.queue.tasks", "{task}", "Tasks by state and lane (queued: the queue depth)."
)

END_STATES: Final = frozenset(s.value for s in states.TERMINAL)
ATTEMPT_ENDS: Final = frozenset({"completed", "partial_pass", "failed"})


def _lane(row: Any) -> str:
    return _LANES[int(row.lane)]


# one attributes mapping per series, made once: the histograms record once per task
_BY_LANE: Final = {lane: {"lane": lane} for lane in _LANES}
_BY_OUTCOME: Final = {
    (outcome, lane): {"outcome": outcome, "lane": lane}
    for outcome in ATTEMPT_ENDS
    for lane in _LANES
}


def time_claim(kind: str, seconds: float, found: bool) -> None:
    claim.record(seconds, {"kind": kind, "found": "true" if found else "false"})


def count_submitted(lanes: Iterable[int]) -> None:
    for lane, n in Counter(lanes).items():
        submitted.add(n, {"lane": _LANES[lane]})


def count_assigned(rows: Iterable[Any]) -> None:
    """Rows just claimed: their assignment, and how long each waited since its submit."""
    now = clock.now()
    lanes: Counter[str] = Counter()
    for row in rows:
        lane = _lane(row)
        lanes[lane] += 1
        wait.record(_seconds(row.created_at, now), _BY_LANE[lane])
    for lane, n in lanes.items():
        assigned.add(n, {"lane": lane})


def count_reported(rows: Iterable[Any]) -> None:
    """Rows an agent's report just moved: the run of each attempt that ended, and the tasks
    that ended with it (a failure ends only the attempt: `count_ended` sees where it went)."""
    now = clock.now()
    for row in rows:
        state = str(row.state)
        if state in ATTEMPT_ENDS and row.assigned_at is not None:
            run.record(_seconds(row.assigned_at, now), _BY_OUTCOME[state, _lane(row)])
    count_ended(rows)


def count_ended(rows: Iterable[Any]) -> None:
    ended: Counter[tuple[str, str]] = Counter()
    for row in rows:
        if str(row.state) in END_STATES:
            ended[str(row.state), _lane(row)] += 1
    for (state, lane), n in ended.items():
        finished.add(n, {"state": state, "lane": lane})


def _seconds(since: datetime, now: datetime) -> float:
    return max(0.0, (now - since).total_seconds())


LIVE_STATES: Final = tuple(s.value for s in states.TRANSITIONS if s not in states.TERMINAL)


def sampler(res: Resources) -> metering.Sampler:
    """The sampler of the live counts; also makes every lane's (and end state's) counter
    series exist at 0, so an idle lane reads 0 rather than no data."""
    lanes = [{"lane": lane} for lane in _LANES]
    metering.zero(submitted, lanes)
    metering.zero(assigned, lanes)
    metering.zero(finished, [{"state": s} | lane for s in sorted(END_STATES) for lane in lanes])

    async def sample() -> None:
        async with res.engine.connect() as conn:
            counts = await store.count_live(conn)
        tasks.set(
            {
                (("state", s), ("lane", name)): counts.get((s, n), 0)
                for s in LIVE_STATES
                for n, name in enumerate(_LANES)
            }
        )

    return sample
