"""Backup age and result on the dashboard, and the backup_failed and backup_stale rules, from
rows the real `agentcom backup` writes into the stack's Postgres (`ops.backups`)."""

from pathlib import Path
from typing import Any

import httpx
from dashboard_stack import AlertLog, Stack, backup, set_thresholds

from agentcom_common.settings import CommonSettings
from agentcom_common.testing import eventually

Json = dict[str, Any]


async def shown_backups(stack: Stack) -> Json:
    """The latest snapshot's backups, through the dashboard's API."""
    async with stack.client(stack.viewer_token) as http:
        response = await http.get(f"{stack.dashboard}/api/dashboard/metrics")
    assert response.status_code == 200, response.text
    snapshots = response.json()
    assert snapshots, "no snapshot yet"
    shown = snapshots[-1]["backups"]
    assert shown is not None, snapshots[-1]
    return shown


async def scrape(stack: Stack) -> str:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{stack.dashboard}/metrics")
    assert response.status_code == 200, response.text
    return response.text


async def test_a_failed_backup_fires_backup_failed_and_a_good_one_clears_it(
    stack: Stack, alerts: AlertLog, settings: CommonSettings, tmp_path: Path
) -> None:
    home = tmp_path / "cli-home"
    home.mkdir()
    (home / "backups").write_text("a file where the backups directory belongs")

    failed = await backup(settings, home)

    assert failed.returncode == 1
    fired = await alerts.wait_for("backup_failed", "fired")
    assert fired["severity"] == "warning"
    assert "cannot write the backup" in fired["message"]
    assert str(home / "backups") in fired["message"]
    shown = await shown_backups(stack)
    assert shown["last"]["ok"] is False
    assert shown["last_ok"] is None
    scraped = await scrape(stack)
    assert "agentcom_backup_last_ok 0\n" in scraped
    assert "agentcom_backup_age_seconds" not in scraped  # no good backup yet

    (home / "backups").unlink()
    done = await backup(settings, home)

    assert done.returncode == 0, done.stderr
    await alerts.wait_for("backup_failed", "cleared")

    async def good_one_shown() -> Json:
        shown = await shown_backups(stack)
        assert shown["last"]["ok"] is True, shown
        return shown

    shown = await eventually(good_one_shown, timeout=20)
    assert shown["last_ok"] == shown["last"]
    assert shown["last_ok"]["file"] in done.stdout
    assert 0 <= shown["last_ok_age_s"] < 3600
    scraped = await scrape(stack)
    assert "agentcom_backup_last_ok 1\n" in scraped
    assert "\nagentcom_backup_age_seconds " in scraped


async def test_backup_stale_fires_past_its_threshold_and_clears_when_raised(
    stack: Stack, alerts: AlertLog, settings: CommonSettings, tmp_path: Path
) -> None:
    done = await backup(settings, tmp_path / "cli-home")
    assert done.returncode == 0, done.stderr
    await eventually(lambda: _good_one(stack), timeout=20)
    assert alerts.of("backup_stale") == []  # 12 h by default: twice AGENTCOM_BACKUP_INTERVAL

    set_thresholds(stack, backup_stale_after="1ms")
    fired = await alerts.wait_for("backup_stale", "fired")

    assert fired["severity"] == "warning"
    assert "the newest backup is" in fired["message"]
    assert str(tmp_path / "cli-home" / "backups") in fired["details"]["file"]
    set_thresholds(stack, backup_stale_after="1h")
    await alerts.wait_for("backup_stale", "cleared")


async def test_with_no_backup_at_all_backup_stale_fires_once_watched_that_long(
    stack: Stack, alerts: AlertLog
) -> None:
    shown = await eventually(lambda: shown_backups(stack), timeout=20)
    assert shown["last"] is None
    assert shown["last_ok_age_s"] is None

    set_thresholds(stack, backup_stale_after="1ms")

    fired = await alerts.wait_for("backup_stale", "fired")
    assert "no backup has succeeded" in fired["message"]
    assert alerts.of("backup_failed") == []  # nothing failed: nothing was tried


async def _good_one(stack: Stack) -> None:
    shown = await shown_backups(stack)
    assert shown["last_ok"] is not None, shown
