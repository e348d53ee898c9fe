"""JSON endpoints the page calls with its session cookie: the snapshot, drill-down and actions.

Every action needs an admin session plus its CSRF token, and goes to the service that owns the
thing with the admin's own token: the queue retries and cancels tasks, the scheduler restarts
agents, the hub pauses itself and cancels, retries, approves or rejects its goals. Only alert
acknowledgement is the dashboard's own.
"""

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import Field, HttpUrl, field_validator

from agentcom_common import clock
from agentcom_common.contracts.base import Request as RequestBody
from agentcom_common.errors import InvalidError
from agentcom_common.openapi import errors
from agentcom_dashboard import alert_store, events, push
from agentcom_dashboard.access import AdminDep, LiveDep, MemberDep, ViewerDep
from agentcom_dashboard.live import Live

router = APIRouter(prefix="/ui", tags=["page"])
Id = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
# an action answers with the owning service's own refusal, passed on with its code
PASSED_ON = errors(404, 409)
PANELS = [
    "stats",
    "tasks",
    "dead_letter",
    "agents",
    "llm_endpoints",
    "llm_costs",
    "llm_costs_by_agent",
    "hub",
    "goals",
]


@router.get("/snapshot")
async def snapshot(live: LiveDep, who: ViewerDep) -> dict[str, Any]:
    """Everything the page shows, plus `seq`: open `/ws?after=<seq>` to follow from there.

    `seq` is read first, so an event between it and the reads is replayed, never lost.
    """
    seq = await events.last_sequence(live.res.js)
    reads = await live.sources.read_panels(PANELS)
    now = clock.now()
    tracker = live.tracker
    return {
        "seq": seq,
        "me": None if who is None else {"name": who.name, "role": who.role.value},
        "csrf": None if who is None else who.csrf,
        "panels": {name: read.as_json() for name, read in reads.items()},
        "metrics": [s.as_json() for s in live.history.snapshots],
        "utilization": live.history.utilization(),
        "alerts": live.book.listing(),
        "tool_calls": list(tracker.tool_calls),
        "hub_events": tracker.hub,
        "hub_time_in_state": tracker.hub_time_in_state(now),
        "goal_events": list(tracker.goals.values()),
        "vapid_public_key": live.pusher.vapid.public_key,
        "presence": live.presence,
    }


@router.get("/tasks/{task_id}")
async def task_detail(task_id: Id, live: LiveDep, _who: ViewerDep) -> dict[str, Any]:
    """One task with its history and the tool calls seen for it (drill-down)."""
    task, history = await asyncio.gather(
        live.sources.read("queue", f"/api/tasks/{task_id}"),
        live.sources.read("queue", f"/api/tasks/{task_id}/history"),
    )
    calls = [c for c in live.tracker.tool_calls if c["data"].get("task_id") == task_id]
    return {"task": task.as_json(), "history": history.as_json(), "tool_calls": calls}


@router.post("/tasks/{task_id}/retry", responses=PASSED_ON)
async def retry_task(task_id: Id, live: LiveDep, who: AdminDep) -> Any:
    """Retry a dead-lettered task through the queue. Errors: the queue's (404, 409), 403."""
    return await live.sources.act("queue", f"/api/tasks/{task_id}/retry", who.token)


@router.post("/tasks/{task_id}/cancel", responses=PASSED_ON)
async def cancel_task(task_id: Id, live: LiveDep, who: AdminDep) -> Any:
    """Cancel a task through the queue. Errors: the queue's (404, 409), 403."""
    return await live.sources.act("queue", f"/api/tasks/{task_id}/cancel", who.token)


@router.post("/agents/{agent_id}/restart", responses=PASSED_ON)
async def restart_agent(agent_id: Id, live: LiveDep, who: AdminDep) -> Any:
    """Ask an agent's sidecar to restart, through the scheduler. Errors: 404, 403."""
    return await live.sources.act("scheduler", f"/api/agents/{agent_id}/restart", who.token)


@router.post("/hub/{verb}", responses=PASSED_ON)
async def pause_hub(
    verb: Annotated[str, Path(pattern=r"^(pause|resume)$")], live: LiveDep, who: AdminDep
) -> Any:
    """Pause or resume the hub through the hub service. Errors: 503 `not_available`, 403."""
    return await live.sources.act("hubfsm", f"/api/hub/{verb}", who.token)


@router.get("/hub")
async def hub_detail(live: LiveDep, _who: ViewerDep) -> dict[str, Any]:
    """The hub's state (leader, paused, time in each state), its latest moves, its healing runs
    (issues with evidence, actions with results), contemplation's proposals and improvement
    scans' findings; each read on its own, so one the hub lacks is just not available."""
    state, history, healing, proposals, findings = await asyncio.gather(
        live.sources.read("hubfsm", "/api/hub/state"),
        live.sources.read("hubfsm", "/api/hub/history?limit=20"),
        live.sources.read("hubfsm", "/api/hub/healing?limit=10"),
        live.sources.read("hubfsm", "/api/hub/proposals?limit=20"),
        live.sources.read("hubfsm", "/api/hub/findings?limit=20"),
    )
    return {
        "state": state.as_json(),
        "history": history.as_json(),
        "healing": healing.as_json(),
        "proposals": proposals.as_json(),
        "findings": findings.as_json(),
    }


ProposalId = Annotated[str, Path(pattern=r"^prop-[0-9a-f]{16}$")]


class ProposalVerdict(RequestBody):
    reason: str = Field(default="", max_length=2000)


@router.post("/hub/proposals/{proposal_id}/{verdict}", responses=PASSED_ON)
async def judge_proposal(
    proposal_id: ProposalId,
    verdict: Annotated[str, Path(pattern=r"^(accept|reject)$")],
    body: ProposalVerdict,
    live: LiveDep,
    who: AdminDep,
) -> Any:
    """Accept a proposal (the hub makes it a goal) or reject it with a reason (told to the next
    contemplation cycle), through the hub with the admin's token.

    Errors: 422 `invalid_field` (a rejection needs a reason), the hub's (404, 409), 403."""
    if verdict == "reject" and not body.reason.strip():
        raise InvalidError("reason: say why the proposal is rejected", field="reason")
    path = f"/api/hub/proposals/{proposal_id}/{verdict}"
    return await live.sources.act("hubfsm", path, who.token, {"reason": body.reason.strip()})


@router.get("/goals/{goal_id}")
async def goal_detail(goal_id: Id, live: LiveDep, _who: ViewerDep) -> dict[str, Any]:
    """One goal as the hub shows it: plan, tasks, verifications, cost, history."""
    return {"goal": (await live.sources.read("hubfsm", f"/api/goals/{goal_id}")).as_json()}


@router.post("/goals/{goal_id}/{verb}", responses=PASSED_ON)
async def move_goal(
    goal_id: Id,
    verb: Annotated[str, Path(pattern=r"^(cancel|retry)$")],
    live: LiveDep,
    who: AdminDep,
) -> Any:
    """Cancel or retry a goal through the hub. Errors: the hub's (404, 409), 403."""
    return await live.sources.act("hubfsm", f"/api/goals/{goal_id}/{verb}", who.token)


class PlanVerdict(RequestBody):
    reason: str = Field(default="", max_length=2000)


@router.post("/goals/{goal_id}/plan/{verdict}", responses=PASSED_ON)
async def judge_plan(
    goal_id: Id,
    verdict: Annotated[str, Path(pattern=r"^(approve|reject)$")],
    body: PlanVerdict,
    live: LiveDep,
    who: AdminDep,
) -> Any:
    """Approve a goal's plan as it is, or reject it with a reason (the hub plans again).

    Errors: 422 `invalid_field` (a rejection needs a reason), the hub's (404, 409), 403."""
    if verdict == "reject" and not body.reason.strip():
        raise InvalidError("reason: say why the plan is rejected", field="reason")
    sent = {"reason": body.reason} if verdict == "reject" else {}
    path = f"/api/goals/{goal_id}/plan/{verdict}"
    return await live.sources.act("hubfsm", path, who.token, sent)


@router.post("/alerts/{rule_id}/acknowledge", responses=errors(404))
async def acknowledge_alert(rule_id: Id, live: LiveDep, who: AdminDep) -> dict[str, Any]:
    """Acknowledge an active alert. Errors: 404 `alert_not_found`, 403."""
    return await acknowledge(live, rule_id, who.name)


async def acknowledge(live: Live, rule_id: str, by: str) -> dict[str, Any]:
    # on the recorded alerts, not this replica's copy: the copy is replaced at each snapshot by
    # one read before, so an acknowledgement made on it between read and swap was lost from
    # the listing until the next snapshot (CI), and an alert another replica fired just now
    # was not in it yet
    book = await alert_store.load(live.engine)
    await book.apply(lambda: [book.acknowledge(rule_id, by, clock.now())], live.publish)
    return {"status": "acknowledged", "rule_id": rule_id}


class PushKeys(RequestBody):
    p256dh: str = Field(min_length=80, max_length=100, pattern=r"^[A-Za-z0-9_-]+=*$")
    auth: str = Field(min_length=16, max_length=32, pattern=r"^[A-Za-z0-9_-]+=*$")

    @field_validator("p256dh")
    @classmethod
    def _a_p256_point(cls, value: str) -> str:
        """A key that is not a P-256 point would fail every later push to this browser."""
        push.browser_key(value)
        return value


class PushSubscription(RequestBody):
    """What `PushManager.subscribe()` returns, as `subscription.toJSON()`."""

    endpoint: HttpUrl
    keys: PushKeys
    expirationTime: float | None = None  # noqa: N815 - the browser's own field name


@router.post("/push/subscriptions", status_code=201)
async def subscribe_push(body: PushSubscription, live: LiveDep, who: MemberDep) -> dict[str, str]:
    """Store this browser's push subscription; critical alerts and dead letters are sent to it.

    Errors: 401 `login_required`, 403 `csrf_failed`, 422 naming the field (an http endpoint
    unless `dashboard_push_allow_http`).
    """
    if body.endpoint.scheme != "https" and not live.settings.dashboard_push_allow_http:
        raise InvalidError("endpoint: push services are https URLs", field="endpoint")
    await live.pusher.subscribe(str(body.endpoint), body.keys.p256dh, body.keys.auth, who.token_id)
    return {"status": "subscribed"}


@router.get("/metrics")
async def metrics_history(live: LiveDep, _who: ViewerDep) -> list[dict[str, Any]]:
    """Every metrics snapshot in the window, oldest first (the charts)."""
    return [s.as_json() for s in live.history.snapshots]


@router.get("/presence")
async def presence(live: LiveDep, _who: ViewerDep) -> dict[str, dict[str, object]]:
    """Each agent's last heartbeat: when, and its CPU, RAM, VRAM and load when reported."""
    return live.presence
