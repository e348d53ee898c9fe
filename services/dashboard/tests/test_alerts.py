"""Each alert rule fires and clears against the real queue and scheduler, at millisecond scale.

Snapshots run every 100 ms; thresholds are written to the alerts file while the dashboard
runs, which also proves they are reloaded without a restart. Alerts are read where operators
see them: the `agentcom.evt.alert.*` events the dashboard publishes through its outbox.
"""

import logging
import os
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from dashboard_stack import AlertLog, Stack, claim, dead_letter, report, serve, set_thresholds
from nats.aio.client import Client

from agentcom_common.testing import eventually
from agentcom_dashboard.alerts import LIFECYCLE, AlertState, Signal
from agentcom_dashboard.app import create_app as dashboard_app
from agentcom_dashboard.live import ThresholdFile
from agentcom_dashboard.settings import AlertThresholds

Json = dict[str, Any]


async def wait_depth(stack: Stack, depth: int) -> None:
    async def seen() -> None:
        latest = stack.live.history.latest
        assert latest is not None
        assert latest.queue_depth == depth

    await eventually(seen, timeout=20)


async def test_queue_growing_fires_then_clears_when_it_stops(
    stack: Stack, alerts: AlertLog
) -> None:
    set_thresholds(stack, queue_growing_checks=3)
    await wait_depth(stack, 0)
    for depth in (1, 2, 3):
        await stack.submit()
        await wait_depth(stack, depth)

    fired = await alerts.wait_for("queue_growing", "fired")
    assert fired["severity"] == "warning"
    assert fired["details"]["depths"] == [0, 1, 2, 3]

    cleared = await alerts.wait_for("queue_growing", "cleared")  # stable for 3 snapshots
    assert cleared["rule_id"] == "queue_growing"


async def test_high_failure_rate_fires_then_clears_as_tasks_succeed(
    stack: Stack, alerts: AlertLog, nc: Client
) -> None:
    set_thresholds(stack, failure_rate_pct=50, failure_rate_min_tasks=2, error_count=100)
    await dead_letter(stack, nc)
    await dead_letter(stack, nc)

    fired = await alerts.wait_for("high_failure_rate", "fired")
    assert fired["details"] == {"failed": 2, "finished": 2}

    for _ in range(3):
        await stack.submit()
        task = await claim(nc)
        await report(nc, task, "accepted")
        await report(nc, task, "completed", result={"summary": "ok"})
    await alerts.wait_for("high_failure_rate", "cleared")  # 2 of 5 = 40 %
    assert alerts.of("high_error_rate") == []


async def test_high_error_rate_fires_and_clears_when_the_threshold_is_raised_live(
    stack: Stack, alerts: AlertLog, nc: Client
) -> None:
    set_thresholds(stack, error_count=1, failure_rate_pct=100)
    await dead_letter(stack, nc)
    await stack.snapshots_after(3)
    assert alerts.of("high_error_rate") == []  # 1 is not above 1

    await dead_letter(stack, nc)
    fired = await alerts.wait_for("high_error_rate", "fired")
    assert fired["severity"] == "warning"

    set_thresholds(stack, error_count=5, failure_rate_pct=100)  # no restart
    await alerts.wait_for("high_error_rate", "cleared")


async def test_warning_waits_out_its_cooldown(stack: Stack, alerts: AlertLog, nc: Client) -> None:
    set_thresholds(stack, error_count=0, error_rate_cooldown="1h", failure_rate_pct=100)
    await dead_letter(stack, nc)
    await alerts.wait_for("high_error_rate", "fired")
    set_thresholds(stack, error_count=5, error_rate_cooldown="1h", failure_rate_pct=100)
    await alerts.wait_for("high_error_rate", "cleared")

    set_thresholds(stack, error_count=0, error_rate_cooldown="1h", failure_rate_pct=100)
    await stack.snapshots_after(5)
    assert len(alerts.of("high_error_rate", "fired")) == 1  # true again, but cooling down

    set_thresholds(stack, error_count=0, error_rate_cooldown="0ms", failure_rate_pct=100)
    await alerts.wait_for("high_error_rate", "fired", count=2)


async def test_stuck_tasks_fire_clear_and_critical_ignores_the_cooldown(
    stack: Stack, alerts: AlertLog, nc: Client
) -> None:
    set_thresholds(stack, stuck_after="300ms", stuck_critical_count=2, stuck_cooldown="1h")
    await stack.submit()
    first = await claim(nc)  # assigned, and then nothing happens

    fired = await alerts.wait_for("stuck_tasks", "fired")
    assert fired["severity"] == "warning"
    assert fired["details"]["task_ids"] == [first.id]

    await report(nc, first, "accepted")
    await report(nc, first, "completed", result={})
    await alerts.wait_for("stuck_tasks", "cleared")

    await stack.submit()
    await stack.submit()
    second, third = await claim(nc), await claim(nc, "a2")
    critical = await alerts.wait_for("stuck_tasks", "fired", count=2)  # inside the 1 h cooldown
    assert critical["severity"] == "critical"
    assert sorted(critical["details"]["task_ids"]) == sorted([second.id, third.id])


async def test_no_agents_online_fires_for_an_offline_fleet_and_clears(
    stack: Stack, alerts: AlertLog
) -> None:
    async with stack.client() as http:
        agent = (await http.post(f"{stack.scheduler}/api/agents", json={"name": "lonely"})).json()
        fired = await alerts.wait_for("no_agents_online", "fired")
        assert fired["severity"] == "critical"
        assert fired["message"] == "none of 1 registered agents is online"

        await http.delete(f"{stack.scheduler}/api/agents/{agent['id']}")
    await alerts.wait_for("no_agents_online", "cleared")


async def test_acknowledge_needs_an_admin_and_an_active_alert(
    stack: Stack, alerts: AlertLog
) -> None:
    async with stack.client() as http:
        await http.post(f"{stack.scheduler}/api/agents", json={"name": "lonely"})
    await alerts.wait_for("no_agents_online", "fired")
    url = f"{stack.dashboard}/api/dashboard/alerts"

    async with stack.client(stack.viewer_token) as viewer:
        refused = await viewer.post(f"{url}/no_agents_online/acknowledge")
        listed = (await viewer.get(url)).json()
    async with stack.client() as admin:
        missing = await admin.post(f"{url}/queue_growing/acknowledge")
        done = await admin.post(f"{url}/no_agents_online/acknowledge")
        after = (await admin.get(url)).json()
    async with httpx.AsyncClient() as nobody:
        anonymous = await nobody.get(url)

    assert refused.status_code == 403
    assert [a["acknowledged"] for a in listed] == [False]
    assert missing.status_code == 404
    assert missing.json()["error"] == "alert_not_found"
    assert done.status_code == 200
    assert after[0]["acknowledged"] is True
    assert after[0]["acknowledged_by"] == "test admin"
    assert (await alerts.wait_for("no_agents_online", "acknowledged"))["by"] == "test admin"
    assert anonymous.status_code == 401


async def test_active_and_acknowledged_alerts_survive_a_restart(
    stack: Stack, alerts: AlertLog
) -> None:
    async with stack.client() as http:
        await http.post(f"{stack.scheduler}/api/agents", json={"name": "lonely"})
        await alerts.wait_for("no_agents_online", "fired")
        await http.post(f"{stack.dashboard}/api/dashboard/alerts/no_agents_online/acknowledge")

    async with serve(dashboard_app(stack.settings)) as restarted, stack.client() as http:
        listed = (await http.get(f"{restarted}/api/dashboard/alerts")).json()
        await stack.snapshots_after(5)

    assert [(a["rule_id"], a["acknowledged_by"]) for a in listed] == [
        ("no_agents_online", "test admin")
    ]
    assert len(alerts.of("no_agents_online", "fired")) == 1  # not fired again by the new process


# A regular file whose read fails (EIO) even for root, for whom `chmod 000` changes nothing.
UNREADABLE = Path("/proc/self/mem")
needs_proc = pytest.mark.skipif(not UNREADABLE.is_file(), reason="needs Linux /proc/self/mem")


def make_unreadable(path: Path) -> None:
    """Swap `path` for an unreadable file in one step (never missing, which means defaults)."""
    link = path.with_name(path.name + ".new")
    link.symlink_to(UNREADABLE)
    os.replace(link, path)


def not_loaded(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "alerts.thresholds_not_loaded"]


@needs_proc
def test_an_unreadable_thresholds_file_at_start_means_defaults_reported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "alerts.env"
    make_unreadable(path)
    thresholds = ThresholdFile(path)

    with caplog.at_level(logging.WARNING, logger="agentcom_dashboard.live"):
        loaded = [thresholds.load() for _ in range(3)]

    assert loaded == [AlertThresholds()] * 3
    assert thresholds.problem is not None
    assert thresholds.problem.startswith(f"{path}: ")
    assert "Input/output error" in thresholds.problem
    [record] = not_loaded(caplog)
    assert record.__dict__["path"] == str(path)


@needs_proc
async def test_an_unreadable_thresholds_file_keeps_the_last_good_ones_and_snapshots_going(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    set_thresholds(stack, queue_growing_checks=7)

    async def loaded() -> None:
        assert stack.live.thresholds.current.queue_growing_checks == 7

    await eventually(loaded, timeout=20)
    with caplog.at_level(logging.WARNING, logger="agentcom_dashboard.live"):
        make_unreadable(stack.alerts_file)
        await stack.snapshots_after(5)  # each snapshot raised before: none was taken

    assert len(not_loaded(caplog)) == 1
    assert stack.live.thresholds.current.queue_growing_checks == 7
    set_thresholds_file = stack.alerts_file.with_name("good.env")
    set_thresholds_file.write_text("AGENTCOM_DASHBOARD_ALERT_QUEUE_GROWING_CHECKS=4\n")
    os.replace(set_thresholds_file, stack.alerts_file)

    async def fixed() -> None:
        assert stack.live.thresholds.current.queue_growing_checks == 4
        assert stack.live.thresholds.problem is None

    await eventually(fixed, timeout=20)


async def test_a_tier_3_change_raises_risky_change_naming_its_task(
    stack: Stack, alerts: AlertLog, nc: Client
) -> None:
    set_thresholds(stack, error_count=100)
    for tier in (1, 3):
        await stack.submit(description=f"tier {tier}")
        task = await claim(nc)
        await report(nc, task, "accepted")
        delivery = {"risk": {"tier": tier, "reasons": ["x"]}, "action": "review"}
        await report(nc, task, "completed", result={"summary": "ok", "delivery": delivery})
        if tier == 3:
            fired = await alerts.wait_for("risky_change", "fired")
            assert fired["details"] == {"task_ids": [task.id]}
            assert "risk tier 3" in fired["message"]


def test_the_alert_lifecycle_has_a_move_for_every_state_and_signal() -> None:
    states, signals = get_args(AlertState), get_args(Signal)
    assert set(LIFECYCLE) == {(state, signal) for state in states for signal in signals}
