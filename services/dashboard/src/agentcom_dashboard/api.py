"""Bearer-token API of the dashboard (for the CLI and scripts) and Prometheus `/metrics`."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from agentcom_common import metering
from agentcom_common.openapi import errors
from agentcom_common.web import Admin, Viewer
from agentcom_dashboard import alert_store, prometheus, ui
from agentcom_dashboard.access import LiveDep
from agentcom_dashboard.ui import Id

router = APIRouter(prefix="/api/dashboard", tags=["dashboard"])
scrape = APIRouter(tags=["metrics"])


@router.get("/alerts")
async def list_alerts(live: LiveDep, _who: Viewer) -> list[dict[str, Any]]:
    """The active alerts, acknowledged or not."""
    # as recorded: an acknowledgement through any replica shows at once
    return (await alert_store.load(live.engine)).listing()


@router.post("/alerts/{rule_id}/acknowledge", responses=errors(404))
async def acknowledge_alert(rule_id: Id, live: LiveDep, who: Admin) -> dict[str, Any]:
    """Acknowledge an active alert (idempotent). Errors: 404 `alert_not_found`."""
    return await ui.acknowledge(live, rule_id, who.name)


@router.get("/metrics")
async def metrics_history(live: LiveDep, _who: Viewer) -> list[dict[str, Any]]:
    """Every metrics snapshot in the window, oldest first."""
    return [snapshot.as_json() for snapshot in live.history.snapshots]


@scrape.get("/metrics", response_class=PlainTextResponse)
async def prometheus_metrics(live: LiveDep) -> PlainTextResponse:
    """Prometheus text format: queue depth, tasks by state, agents, alerts, failures, pushes,
    then every OTel instrument of this process (as every service's `/metrics`)."""
    return PlainTextResponse(
        prometheus.render(live) + metering.render(), media_type=metering.CONTENT_TYPE
    )
