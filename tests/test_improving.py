"""Improvement scanning end to end at millisecond settings: the queue, the scheduler and the hub
in this process, one real sidecar process with the `scan` executor, and a small real git repo
with known issues. With no goals the brain goes resting -> improving; the hub submits a scan
task, the sidecar scans its checkout (ruff, modules without tests, public functions without
docstrings, dependencies) and reports the findings; the hub keeps three as self-improvement
goals and drops one (a file cooldown within the cycle). The goals are cancelled and the repo
changes: the dependency the first cycle wanted removed is gone, and a module imports it again.
The second cycle drops the finding that would declare it back (oscillation: it undoes a kept
one) and those kept last time (fingerprint cooldown), keeps nothing, and the hub goes on to
contemplating."""

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentcom_common.settings import CommonSettings
from agentcom_common.testing import NatsServer, eventually, running
from agentcom_hubfsm.app import create_app as hub_app
from agentcom_hubfsm.settings import HubSettings

Json = dict[str, Any]
NEVER = timedelta(hours=1)
PYPROJECT = """[project]
name = "shop"
version = "0.1.0"
dependencies = [{deps}]

[tool.ruff.lint]
select = ["F"]
"""
FILES = {
    "pyproject.toml": PYPROJECT.format(deps='"requests>=2"'),
    "src/shop/__init__.py": "",
    # F401 (os), and main has no docstring
    "src/shop/app.py": "import os\n\n\ndef main():\n    return 1\n",
    # no test mentions db
    "src/shop/db.py": 'def connect():\n    """Open the database."""\n    return 1\n',
    "tests/test_app.py": "from shop import app\n\n\ndef test_main():\n    assert app.main() == 1\n",
}
# the second commit: requests is no longer declared, and a new (tested) module imports it
CHANGED = {
    "pyproject.toml": PYPROJECT.format(deps=""),
    "src/shop/web.py": 'import requests\n\n\ndef fetch(url):\n    """Get a page."""\n    return requests.get(url)\n',
    "tests/test_web.py": "from shop import web\n\n\ndef test_fetch():\n    assert web.fetch\n",
}


FAST: Json = {
    "hub_tick_interval": timedelta(milliseconds=50),
    # a lease of 1.5 s: at 200 ms (0.6 s) a loaded machine lost the lead mid-cycle, and each
    # regain waits a lease and starts the stay's entry work again
    "hub_leader_interval": timedelta(milliseconds=500),
    "hub_goal_sweep": timedelta(milliseconds=100),
    "hub_health_interval": NEVER,  # no assessment: healing stays out of the way
    "hub_llm_backoff": NEVER,  # the goals wait to be planned, quietly (no model here)
    "hub_improving_enabled": True,
    "hub_improving_interval": timedelta(milliseconds=1),
    "hub_improving_fingerprint_cooldown": NEVER,
    "hub_improving_file_cooldown": NEVER,
    "hub_contemplation_interval": timedelta(milliseconds=1),
}


@contextlib.asynccontextmanager
async def hub_with(
    settings: CommonSettings, token: str, data: Path, **extra: Any
) -> AsyncGenerator[httpx.AsyncClient]:
    hub = HubSettings.model_validate(settings.model_dump() | {"hub_data_dir": data} | FAST | extra)
    async with running(hub_app(hub), "http://hubfsm") as client:
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


@pytest.fixture
async def hubfsm(
    settings: CommonSettings, admin_token: str, tmp_path: Path, origin: Path
) -> AsyncIterator[httpx.AsyncClient]:
    hub = hub_with(settings, admin_token, tmp_path / "hub", hub_improving_repos=[str(origin)])
    async with hub as client:
        yield client


@pytest.fixture
def origin(tmp_path: Path, repos: Any) -> Path:
    made: Path = repos.origin(tmp_path, FILES)
    return made


def commit(repos: Any, tmp_path: Path, files: dict[str, str]) -> None:
    seed = tmp_path / "seed"  # the clone `repos.origin` pushed from
    for name, text in files.items():
        (seed / name).parent.mkdir(parents=True, exist_ok=True)
        (seed / name).write_text(text)
    repos.git("add", "-A", cwd=seed)
    repos.git("commit", "--quiet", "-m", "requests moves", cwd=seed)
    repos.git("push", "--quiet", str(tmp_path / "origin.git"), "main", cwd=seed)


async def moves(hub: httpx.AsyncClient) -> list[tuple[str, str]]:
    page = (await hub.get("/api/hub/history", params={"limit": 100})).json()["moves"]
    return [(m["to_state"], m["reason"]) for m in reversed(page)]


async def findings_of(hub: httpx.AsyncClient, cycle: int, n: int) -> dict[str, Json]:
    """The cycle's findings by category, once it stored `n`."""

    async def stored() -> dict[str, Json]:
        got = await hub.get("/api/hub/findings", params={"limit": 500})
        assert got.status_code == 200, got.text
        mine = [f for f in got.json()["findings"] if f["cycle"] == cycle]
        assert len(mine) == n, mine
        return {f["category"]: f for f in mine}

    return await eventually(stored, timeout=90)


async def cycle_of(hub: httpx.AsyncClient, cycle: int) -> Json:
    got = await hub.get(f"/api/hub/improving/cycles/{cycle}")
    assert got.status_code == 200, got.text
    report: Json = got.json()
    return report


@pytest.mark.timeout(300)  # two real cycles on a real sidecar, on a shared and busy machine
async def test_scans_become_goals_and_oscillating_or_cooled_findings_are_dropped(
    hub: tuple[httpx.AsyncClient, httpx.AsyncClient],
    hubfsm: httpx.AsyncClient,
    sidecars: Any,
    repos: Any,
    nats_server: NatsServer,
    origin: Path,
    tmp_path: Path,
) -> None:
    queue, scheduler = hub
    made = (
        await scheduler.post("/api/agents", json={"name": "s1", "capabilities": ["scan"]})
    ).json()
    config = sidecars.config(
        made, nats_server.address, repos=[{"url": str(origin)}], executors=["scan"]
    )
    sidecars.start("s1", config)

    try:
        first = await findings_of(hubfsm, 1, 4)
    except AssertionError as exc:  # say where it stopped: the scan task, the hub, the sidecar
        tasks = (await queue.get("/api/tasks")).json()
        state = (await hubfsm.get("/api/hub/state")).json()
        where = f"{tasks}\n{await moves(hubfsm)}\n{state}\n{sidecars.log('s1')[-3000:]}"
        raise AssertionError(where) from exc
    assert set(first) == {"lint", "missing_tests", "unused_dependency", "missing_docstring"}
    kept = {c: f for c, f in first.items() if f["state"] == "kept"}
    assert set(kept) == {"lint", "missing_tests", "unused_dependency"}, first
    assert first["lint"]["title"] == "Fix ruff F401 in src/shop/app.py"
    assert first["lint"]["files"] == ["src/shop/app.py"]
    assert "`os` imported but unused" in first["lint"]["evidence"][0]
    assert first["missing_tests"]["subject"] == "shop.db"
    assert first["unused_dependency"]["title"] == "Remove the unused dependency requests"
    docstring = first["missing_docstring"]
    assert docstring["state"] == "dropped"
    assert docstring["reason"].startswith("file cooldown: src/shop/app.py"), docstring
    assert docstring["evidence"] == ["src/shop/app.py:4 def main"]

    # the scan ran on the sidecar, through the queue, and pushed nothing
    tasks = (await queue.get("/api/tasks", params={"goal_id": "improving-1"})).json()["tasks"]
    [scan] = tasks
    assert (scan["state"], scan["assigned_to"]) == ("completed", "s1"), scan
    assert scan["result"]["pushed"] is False
    assert len(scan["result"]["details"]["scan"]["findings"]) == 4

    # the cycle's report, through its route: what it scanned, kept, dropped and spent
    report = await cycle_of(hubfsm, 1)
    assert report["repos"] == [
        {
            "schema_version": 1,
            "repo": str(origin),
            "task_id": scan["id"],
            "state": "completed",
            "findings": 4,
            "note": None,
        }
    ], report
    assert (report["outcome"], report["found"], report["kept"]) == ("kept", 4, 3), report
    assert report["dropped"] == {"file_cooldown": 1}, report
    assert sorted(report["goals"]) == sorted(f["goal_id"] for f in kept.values())
    assert report["budget"] == {
        "schema_version": 1,
        "calls": 0,
        "tokens_in": 0,
        "tokens_out": 0,
        "cost_usd": 0.0,
    }
    assert report["notes"] == []
    assert report["ended_at"] is not None

    # the kept ones are low-priority goals linked to their finding
    goals: list[str] = []
    for finding in kept.values():
        goal = (await hubfsm.get(f"/api/goals/{finding['goal_id']}")).json()
        assert (goal["source"], goal["priority"], goal["title"]) == (
            "self_improvement",
            "low",
            finding["title"],
        )
        linked = await hubfsm.get(goal["link"])
        assert linked.status_code == 200, linked.text
        assert linked.json()["id"] == finding["id"]
        goals.append(str(goal["id"]))

    async def executing() -> None:
        assert (await moves(hubfsm))[:3] == [
            ("resting", "created"),
            ("improving", "nothing_to_do"),
            ("executing", "goals_open"),
        ]

    await eventually(executing, timeout=30)

    # the work of the first cycle is taken as done; the repo moves on
    commit(repos, tmp_path, CHANGED)
    for goal_id in goals:
        cancelled = await hubfsm.post(f"/api/goals/{goal_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text

    second = await findings_of(hubfsm, 2, 4)
    assert {f["state"] for f in second.values()} == {"dropped"}, second
    back = second["missing_dependency"]
    assert back["title"] == "Declare the dependency requests"
    assert back["reason"].startswith(
        f"oscillation: it undoes finding {kept['unused_dependency']['id']}"
    ), back
    for category in ("lint", "missing_tests"):
        assert second[category]["fingerprint"] == first[category]["fingerprint"]
        assert second[category]["reason"].startswith(
            f"fingerprint cooldown: the same finding ({first[category]['id']})"
        ), second[category]
    assert second["missing_docstring"]["reason"].startswith("file cooldown: src/shop/app.py")
    report = await cycle_of(hubfsm, 2)
    assert (report["outcome"], report["found"], report["kept"], report["goals"]) == (
        "nothing",
        4,
        0,
        [],
    ), report
    assert report["dropped"] == {"fingerprint_cooldown": 2, "file_cooldown": 1, "oscillation": 1}
    assert [r["findings"] for r in report["repos"]] == [4]

    async def contemplating() -> None:
        path = await moves(hubfsm)
        assert path[3:6] == [
            ("resting", "goals_done"),
            ("improving", "nothing_to_do"),
            ("contemplating", "improving_done"),
        ], path

    await eventually(contemplating, timeout=30)

    # the route's filters, and bad ones named
    dropped = (await hubfsm.get("/api/hub/findings", params={"kept": "false"})).json()
    assert {f["state"] for f in dropped["findings"]} == {"dropped"}
    other = (await hubfsm.get("/api/hub/findings", params={"repo": "elsewhere"})).json()
    assert other["findings"] == []
    for params, field in (({"kept": "perhaps"}, "kept"), ({"limit": "0"}, "limit")):
        bad = await hubfsm.get("/api/hub/findings", params=params)
        assert bad.status_code == 422, bad.text
        assert bad.json()["field"] == f"query.{field}", bad.json()
    missing = await hubfsm.get("/api/hub/findings/find-0000000000000000")
    assert missing.status_code == 404, missing.text

    # the cycles' route: newest first, paged, bad input named
    first_page = (await hubfsm.get("/api/hub/improving/cycles", params={"limit": 1})).json()
    assert [c["id"] for c in first_page["cycles"]] == [2]
    rest = await hubfsm.get(
        "/api/hub/improving/cycles", params={"cursor": first_page["next_cursor"]}
    )
    assert [c["id"] for c in rest.json()["cycles"]] == [1], rest.text
    for path, params, field in (
        ("/api/hub/improving/cycles/0", {}, "path.cycle_id"),
        ("/api/hub/improving/cycles/one", {}, "path.cycle_id"),
        ("/api/hub/improving/cycles", {"cursor": "x"}, "query.cursor"),
        ("/api/hub/improving/cycles", {"limit": "501"}, "query.limit"),
    ):
        bad = await hubfsm.get(path, params=params)
        assert bad.status_code == 422, bad.text
        assert bad.json()["field"] == field, bad.json()
    gone = await hubfsm.get("/api/hub/improving/cycles/999")
    assert (gone.status_code, gone.json()["error"]) == (404, "cycle_not_found"), gone.text


async def test_a_scan_no_agent_takes_is_cancelled_and_the_hub_rests(
    hub: tuple[httpx.AsyncClient, httpx.AsyncClient],
    settings: CommonSettings,
    admin_token: str,
    tmp_path: Path,
    origin: Path,
) -> None:
    queue, _ = hub
    async with hub_with(
        settings,
        admin_token,
        tmp_path / "hub",
        hub_improving_repos=[str(origin)],
        hub_improving_scan_timeout=timedelta(milliseconds=300),
        hub_improving_interval=NEVER,  # one cycle
        hub_contemplation_interval=NEVER,  # nothing to go on to: the cycle rests the hub
    ) as hubfsm:

        async def rested() -> None:
            assert (await moves(hubfsm))[1:] == [
                ("improving", "nothing_to_do"),
                ("resting", "improving: nothing left to improve"),
            ]

        await eventually(rested, timeout=30)
        tasks = (await queue.get("/api/tasks", params={"goal_id": "improving-1"})).json()
        assert [t["state"] for t in tasks["tasks"]] == ["cancelled"], tasks
        assert tasks["tasks"][0]["needed_capabilities"] == ["scan"]
        found = (await hubfsm.get("/api/hub/findings")).json()
        assert found["findings"] == []
        report = await cycle_of(hubfsm, 1)
        [repo] = report["repos"]
        assert (repo["repo"], repo["task_id"], repo["state"]) == (
            str(origin),
            tasks["tasks"][0]["id"],
            "timed_out",
        ), report
        assert (report["outcome"], report["found"], report["kept"]) == ("nothing", 0, 0)
        assert report["notes"] == [f"{origin}: {repo['note']}"], report
