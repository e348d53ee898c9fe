"""HTTP API of the hub brain: /api/hub/state|history|health|healing|pause|resume|stop|start.
Parse, call ops, answer."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from agentcom_common import service
from agentcom_common.contracts.health import HealingPage, HealthReport
from agentcom_common.contracts.hub import HubHistoryPage, HubView
from agentcom_common.web import Admin, Viewer
from agentcom_hubfsm.brain import ops
from agentcom_hubfsm.own import Own

CURSOR = r"^[0-9]{1,18}$"


def hub_of(request: Request) -> ops.Hub:
    return service.own(request, Own).hub


H = Annotated[ops.Hub, Depends(hub_of)]
Reason = Annotated[str, Query(max_length=500, description="Recorded with the change.")]
hub = APIRouter(prefix="/api/hub", tags=["hub"])


@hub.get("/state")
async def get_state(h: H, _who: Viewer) -> HubView:
    """The hub's state: since when and why, paused, cycles, seconds in each state, the
    watchdog's deadline, the entry work running, the active brain and the open goals."""
    return await ops.state(h)


@hub.get("/history")
async def get_history(
    h: H,
    _who: Viewer,
    cursor: Annotated[str | None, Query(pattern=CURSOR)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> HubHistoryPage:
    """The hub's moves newest first; pass `next_cursor` back as `cursor` for the next page."""
    return await ops.history(h, cursor, limit)


@hub.get("/health")
async def get_health(h: H, _who: Viewer) -> HealthReport:
    """The last health assessment of the running system with the issues reported from outside
    it (each with source, severity, category and evidence), and healing's brakes."""
    return await ops.health(h)


@hub.get("/healing")
async def get_healing(
    h: H,
    _who: Viewer,
    cursor: Annotated[str | None, Query(pattern=CURSOR)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> HealingPage:
    """Healing runs newest first, each with the issues that started it and every action with
    its evidence and result; pass `next_cursor` back as `cursor` for the next page."""
    return await ops.healing(h, cursor, limit)


@hub.post("/pause")
async def pause_hub(h: H, who: Admin, reason: Reason = "") -> HubView:
    """Pause the hub: it stays in its state (the watchdog may still force resting).

    Pausing a paused hub changes nothing.
    """
    return await ops.pause(h, reason, who.name)


@hub.post("/resume")
async def resume_hub(h: H, who: Admin, reason: Reason = "") -> HubView:
    """Resume a paused hub: its rules apply again at once. Resuming a running hub changes
    nothing."""
    return await ops.resume(h, reason, who.name)


@hub.post("/stop")
async def stop_hub(h: H, who: Admin, reason: Reason = "") -> HubView:
    """Stop the hub: force it to resting (recorded with `reason`) and pause it. Stopping a
    stopped hub changes nothing."""
    return await ops.stop(h, reason, who.name)


@hub.post("/start")
async def start_hub(h: H, who: Admin, reason: Reason = "") -> HubView:
    """Start a stopped hub: resume it, so its rules run again from resting."""
    return await ops.start(h, reason, who.name)
