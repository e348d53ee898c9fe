"""The sidecar's parts on their own: processes, workspaces, delivery, config, service files, CLI."""

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agentcom_common.errors import InvalidError
from agentcom_common.testing import task_view
from agentcom_sidecar import (
    config as sidecar_config,
    delivery,
    processes,
    service_files,
    workspaces,
)
from agentcom_sidecar.journal import Journal
from agentcom_sidecar.progress import ProgressBatcher

ENV = processes.scrubbed_env()


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    return state != "Z"  # a zombie is dead, only not yet reaped by its new parent


def _write_config(path: Path, mode: int = 0o600, **extra: Any) -> Path:
    body = {"agent_id": "a1", "token": "agc_secretsecret", "nats_url": "nats://127.0.0.1:1"}
    path.write_text(json.dumps(body | extra))
    path.chmod(mode)
    return path


async def test_a_deadline_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    script = f'sleep 300 & echo $! > "{pidfile}"; wait'

    done = await processes.run(["sh", "-c", script], tmp_path, timeout=1.0, env=ENV, grace=0.2)

    assert (done.timed_out, done.exit_code) == (True, None)
    assert not _alive(int(pidfile.read_text()))


async def test_a_cancelled_run_stops_its_process(tmp_path: Path) -> None:
    started = asyncio.Event()
    pids: list[int] = []

    def on_start(pid: int) -> None:
        pids.append(pid)
        started.set()

    run = asyncio.create_task(
        processes.run(
            ["sleep", "300"], tmp_path, timeout=300, env=ENV, on_start=on_start, grace=0.2
        )
    )
    await started.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run

    assert not _alive(pids[0])


async def test_a_journaled_child_runs_nothing_before_its_group_is_journaled(
    tmp_path: Path,
) -> None:
    """A sidecar killed between the spawn and the journal write must leave nothing running that
    recovery cannot find: the child waits for `on_start` to return before it runs its argv."""
    ran = tmp_path / "ran"
    seen: list[int] = []

    def journal_fails(pgid: int) -> None:
        seen.append(pgid)
        raise OSError("disk full")  # the journal write never happened

    with pytest.raises(OSError, match="disk full"):
        await processes.run(
            ["touch", str(ran)], tmp_path, timeout=10, env=ENV, on_start=journal_fails
        )
    (pgid,) = seen
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)  # the group is gone: its one process was stopped, unrun
    assert not ran.exists()

    started: list[bool] = []
    done = await processes.run(
        ["sh", "-c", f'touch "{ran}"'],
        tmp_path,
        timeout=10,
        env=ENV,
        on_start=lambda _pgid: started.append(ran.exists()),
    )
    assert started == [False]
    assert ran.exists()
    assert done.exit_code == 0
    with pytest.raises(FileNotFoundError):
        await processes.run(
            ["no-such-tool-here"], tmp_path, timeout=10, env=ENV, on_start=seen.append
        )


async def test_children_never_see_tokens_or_keys(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_" + "s" * 36)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    monkeypatch.setenv("AGENTCOM_NATS_URL", "nats://x")
    monkeypatch.setenv("MY_PASSWORD", "hunter2")
    monkeypatch.setenv("HARMLESS", "yes")

    done = await processes.run(["env"], tmp_path, timeout=10, env=processes.scrubbed_env())

    assert "HARMLESS=yes" in done.tail
    for secret in ("GITHUB_TOKEN", "ANTHROPIC_API_KEY", "AGENTCOM_NATS_URL", "MY_PASSWORD"):
        assert secret not in done.tail


async def test_progress_is_coalesced_and_bounded(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    batcher = ProgressBatcher(
        journal, asyncio.Event(), "a1", "task-0000000000000001", 1, interval=3600, max_lines=5
    )
    async with batcher:
        for n in range(1000):
            await batcher.add(f"line {n}")

    reports = [json.loads(r.payload) for r in journal.unsent()]
    assert len(reports) == 1  # one report for 1000 lines inside one interval
    assert reports[0]["lines"] == [f"line {n}" for n in range(995, 1000)]
    assert reports[0]["dropped_lines"] == 995


async def test_workspaces_branch_per_task_from_the_fresh_default_and_switch_cleanly(
    tmp_path: Path, origin: Path
) -> None:
    root = tmp_path / "ws"
    first = await workspaces.prepare(
        root, str(origin), "a1", "task-1", "Add a thing!", None, ENV, {}, 60
    )
    (first.path / "junk.txt").write_text("left over")
    (first.path / "README.md").write_text("changed")
    # someone else moves main on the remote between tasks
    other = tmp_path / "other"
    _git(tmp_path, "clone", "--quiet", str(origin), str(other))
    (other / "NEW.md").write_text("new")
    _git(other, "add", "NEW.md")
    _git(other, "-c", "user.name=o", "-c", "user.email=o@x", "commit", "--quiet", "-m", "second")
    _git(other, "push", "--quiet", "origin", "main")

    second = await workspaces.prepare(root, str(origin), "a1", "task-2", "Next", None, ENV, {}, 60)

    assert first.branch == "agentcom/a1/task-1-add-a-thing"
    assert (second.branch, second.base, second.path) == (
        "agentcom/a1/task-2-next",
        "main",
        first.path,
    )
    assert _git(second.path, "rev-parse", "--abbrev-ref", "HEAD").strip() == second.branch
    assert (second.path / "NEW.md").exists()  # from the up-to-date default branch
    assert not (second.path / "junk.txt").exists()
    assert (second.path / "README.md").read_text() == "hello\n"
    assert len(list(root.iterdir())) == 1


async def test_a_workspace_keeps_none_of_the_config_or_git_dir_a_task_left(
    tmp_path: Path, origin: Path
) -> None:
    root = tmp_path / "ws"
    first = await workspaces.prepare(root, str(origin), "a1", "task-1", "One", None, ENV, {}, 60)
    planted = {
        "core.sshCommand": "sh -c 'env > /tmp/loot'",
        "credential.helper": "!env > /tmp/loot",
        "include.path": str(tmp_path / "evil.config"),
        "alias.st": "!env > /tmp/loot",
        "remote.origin.url": str(tmp_path / "elsewhere.git"),
        "http.sslVerify": "false",
    }
    for key, value in planted.items():
        _git(first.path, "config", key, value)

    second = await workspaces.prepare(root, str(origin), "a1", "task-2", "Two", None, ENV, {}, 60)
    kept = _git(second.path, "config", "--file", ".git/config", "--list").splitlines()
    (second.path / ".git").rename(tmp_path / "moved.git")  # `.git` a pointer to elsewhere now
    (second.path / ".git").write_text(f"gitdir: {tmp_path / 'moved.git'}\n")
    third = await workspaces.prepare(root, str(origin), "a1", "task-3", "Three", None, ENV, {}, 60)

    assert sorted(k.split("=")[0] for k in kept) == [
        "core.bare",
        "core.filemode",
        "core.logallrefupdates",
        "core.repositoryformatversion",
    ]
    assert (third.path / ".git").is_dir()  # not followed: cloned afresh
    assert _git(third.path, "rev-parse", "--abbrev-ref", "HEAD").strip() == third.branch


async def test_a_workspace_for_a_missing_repo_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(workspaces.GitError, match="clone"):
        await workspaces.prepare(
            tmp_path / "ws", str(tmp_path / "nope"), "a1", "t", "d", None, ENV, {}, 60
        )


async def test_delivery_is_idempotent_and_opens_one_pull_request(
    tmp_path: Path, origin: Path, github: Any
) -> None:
    ws = await workspaces.prepare(
        tmp_path / "ws", str(origin), "a1", "task-9", "Fix", None, ENV, {}, 60
    )
    (ws.path / "fix.txt").write_text("fixed")
    task = task_view(id="task-9", description="Fix it")

    head, pushed = await delivery.commit_and_push(ws, task, "a1", ENV, {}, 60)
    url = (await delivery.open_pull_request(github.url, "tok", "acme/w", ws, "t", "b", 10)).url
    again_head, again_pushed = await delivery.commit_and_push(ws, task, "a1", ENV, {}, 60)
    again = await delivery.open_pull_request(github.url, "tok", "acme/w", ws, "t", "b", 10)
    again_url = again.url

    assert (pushed, again_pushed) == (True, True)
    assert again_head == head  # nothing new to commit the second time
    assert again_url == url
    assert len(github.pulls) == 1
    assert [m for m, _, _ in github.requests] == ["GET", "POST", "GET"]
    assert _git(origin, "rev-parse", ws.branch).strip() == head


async def test_a_refused_pull_request_is_a_clear_error(
    tmp_path: Path, origin: Path, github: Any
) -> None:
    ws = await workspaces.prepare(
        tmp_path / "ws", str(origin), "a1", "task-9", "Fix", None, ENV, {}, 60
    )
    github.fail_create = 422

    with pytest.raises(delivery.DeliveryError) as caught:
        await delivery.open_pull_request(github.url, "tok", "acme/w", ws, "t", "b", 10)

    assert (
        str(caught.value) == "cannot create the pull request: GitHub answered 422 Validation Failed"
    )


async def test_a_pull_request_reply_without_its_url_is_a_clear_error(
    tmp_path: Path, origin: Path, github: Any
) -> None:
    ws = await workspaces.prepare(
        tmp_path / "ws", str(origin), "a1", "task-9", "Fix", None, ENV, {}, 60
    )
    github.create_reply = {"message": "not a pull"}

    with pytest.raises(delivery.DeliveryError) as caught:
        await delivery.open_pull_request(github.url, "tok", "acme/w", ws, "t", "b", 10)

    assert str(caught.value) == (
        f"GitHub API at {github.url} answered without a pull request's html_url"
    )


async def test_a_rejected_push_is_a_clear_error(tmp_path: Path, origin: Path) -> None:
    ws = await workspaces.prepare(
        tmp_path / "ws", str(origin), "a1", "task-9", "Fix", None, ENV, {}, 60
    )
    (ws.path / "f.txt").write_text("x")
    hook = origin / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho protected branch >&2\nexit 1\n")
    hook.chmod(0o755)

    with pytest.raises(
        delivery.DeliveryError, match=r"push agentcom/a1/task-9-fix.*protected branch"
    ):
        await delivery.commit_and_push(
            ws, task_view(id="task-9", description="Fix"), "a1", ENV, {}, 60
        )


async def test_nothing_changed_means_nothing_pushed(tmp_path: Path, origin: Path) -> None:
    ws = await workspaces.prepare(
        tmp_path / "ws", str(origin), "a1", "task-9", "Fix", None, ENV, {}, 60
    )

    assert await delivery.commit_and_push(ws, task_view(id="task-9"), "a1", ENV, {}, 60) == (
        None,
        False,
    )


def test_a_config_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = _write_config(tmp_path / "c.json", 0o644)

    with pytest.raises(InvalidError, match="chmod 600"):
        sidecar_config.load(path)


def test_a_bad_config_value_names_its_field(tmp_path: Path) -> None:
    path = _write_config(tmp_path / "c.json", heartbeat_interval="often")

    with pytest.raises(InvalidError) as caught:
        sidecar_config.load(path)

    assert caught.value.field == "heartbeat_interval"


def test_workspaces_may_not_hold_the_config_or_the_state(tmp_path: Path) -> None:
    path = _write_config(tmp_path / "c.json", workspaces_dir=str(tmp_path))

    with pytest.raises(InvalidError, match="inside workspaces_dir"):
        sidecar_config.load(path)


def test_install_service_writes_a_systemd_unit_and_a_pm2_file(tmp_path: Path) -> None:
    config = sidecar_config.load(_write_config(tmp_path / "c.json"))

    written = service_files.install(config, tmp_path / "units")

    unit = written.systemd_unit.read_text()
    assert written.systemd_unit.name == "agentcom-sidecar-a1.service"
    assert f'-m agentcom_sidecar run --config "{config.path}"' in unit
    assert "Restart=always" in unit
    assert "Environment=AGENTCOM_SUPERVISOR=systemd" in unit
    assert "agc_secretsecret" not in unit
    ecosystem = written.pm2_ecosystem.read_text()
    assert '"AGENTCOM_SUPERVISOR": "pm2"' in ecosystem
    assert written.pm2_ecosystem.parent == config.state


def test_a_journal_row_of_the_older_dict_shape_loads_as_the_task_view(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.db")
    task = task_view(id="task-1", metadata={"command": ["true"]})
    # an older sidecar stored `Assign.task` as it came: the TaskView as a JSON object
    journal.receive("task-1", 1, task.model_dump(mode="json"))
    journal.receive("task-2", 1, {"id": "task-2"})
    first, second = journal.received()
    journal.close()
    assert (first.task, first.unreadable) == (task, None)
    assert second.task is None
    assert second.unreadable is not None
    assert second.unreadable.startswith("the task is not a valid TaskView: state: ")


def test_the_agentcom_command_has_the_sidecar_group_and_status_reads_the_journal(
    tmp_path: Path,
) -> None:
    config = sidecar_config.load(_write_config(tmp_path / "c.json"))
    config.state.mkdir(parents=True)
    journal = Journal(config.journal_path)
    journal.receive("task-1", 1, {"id": "task-1"})
    journal.close()
    config.status_path.write_text(
        json.dumps(
            {"pid": os.getpid(), "connected": True, "task_id": "task-1", "updated_at": time.time()}
        )
    )
    command = [
        sys.executable,
        "-m",
        "agentcom_cli",
        "sidecar",
        "status",
        "--config",
        str(config.path),
        "--json",
    ]

    shown = subprocess.run(command, capture_output=True, text=True, check=False)

    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert (status["running"], status["connected"], status["task_id"]) == (True, True, "task-1")
    assert status["journal"] == {"unsent_reports": 0, "tasks_received": 1}
    assert "agc_secretsecret" not in shown.stdout


async def test_a_huge_line_without_newlines_is_cut_not_fatal(tmp_path: Path) -> None:
    seen: list[str] = []

    async def on_line(line: str) -> None:
        seen.append(line)

    script = "head -c 300000 /dev/zero | tr '\\0' x; echo; echo end"
    done = await processes.run(["sh", "-c", script], tmp_path, timeout=30, env=ENV, on_line=on_line)

    assert done.exit_code == 0
    assert seen[-1] == "end"
    assert all(len(line) <= processes.LINE_MAX for line in seen)


def test_run_with_a_config_others_can_read_exits_1_with_one_clear_line(tmp_path: Path) -> None:
    path = _write_config(tmp_path / "c.json", 0o640)
    command = [sys.executable, "-m", "agentcom_sidecar", "run", "--config", str(path)]

    ran = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)

    assert ran.returncode == 1
    assert (
        ran.stderr.strip()
        == f"error: {path} holds the agent's token and must be private: chmod 600 {path}"
    )
    assert "agc_secretsecret" not in ran.stderr + ran.stdout


def test_install_service_from_the_command_line_prints_what_to_run_next(tmp_path: Path) -> None:
    path = _write_config(tmp_path / "c.json")
    units = tmp_path / "units"
    command = [sys.executable, "-m", "agentcom_sidecar", "install-service", "--config", str(path)]

    ran = subprocess.run(
        [*command, "--systemd-dir", str(units)], capture_output=True, text=True, check=False
    )

    assert ran.returncode == 0, ran.stderr
    assert (units / "agentcom-sidecar-a1.service").exists()
    assert "systemctl --user enable --now agentcom-sidecar-a1" in ran.stdout


def test_the_journal_prunes_old_closed_tasks_but_never_open_or_unsent_ones(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    for n in range(5):
        journal.receive(f"task-{n}", 1, {"id": f"task-{n}"})
        journal.advance(f"task-{n}", 1, "finished", [("completed", b"{}")])
        for row in journal.unsent():
            journal.mark_sent(row.seq)
    journal.receive("task-unsent", 1, {"id": "task-unsent"})
    journal.advance("task-unsent", 1, "finished", [("failed", b"{}")])
    journal.receive("task-open", 1, {"id": "task-open"})

    pruned = journal.prune(keep=2)

    assert sorted(pruned) == ["task-0", "task-1", "task-2"]
    open_task = journal.open_task()
    assert open_task is not None
    assert open_task.task_id == "task-open"
    assert [(t, k) for t, _, k in journal.outcomes()] == [
        ("task-3", "completed"),
        ("task-4", "completed"),
        ("task-unsent", "failed"),
    ]


async def test_a_second_sidecar_on_the_same_state_dir_refuses_to_start(tmp_path: Path) -> None:
    from agentcom_sidecar.runner import Sidecar

    config = sidecar_config.load(_write_config(tmp_path / "c.json"))
    first = Sidecar(config)
    command = [sys.executable, "-m", "agentcom_sidecar", "run", "--config", str(config.path)]

    ran = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, check=False, timeout=60
    )

    first.stopping.set()
    assert await first.run() == 0  # stops at once; releases the lock
    assert ran.returncode == 1
    assert "another sidecar is running with the state dir" in ran.stderr
    again = Sidecar(config)  # the lock is free again
    again.stopping.set()
    assert await again.run() == 0


def test_a_damaged_journal_stops_the_start_with_a_clear_error(tmp_path: Path) -> None:
    config = sidecar_config.load(_write_config(tmp_path / "c.json"))
    config.state.mkdir(parents=True)
    config.journal_path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    command = [sys.executable, "-m", "agentcom_sidecar", "run", "--config", str(config.path)]

    ran = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)

    assert ran.returncode == 1
    assert f"the journal {config.journal_path} is damaged" in ran.stderr
    assert "Traceback" not in ran.stderr


def test_a_cancel_before_its_assignment_is_journaled_so_the_assignment_never_starts(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    assert journal.cancel("task-a", 3, b'{"kind": "cancelled"}')
    assert not journal.cancel("task-a", 3, b'{"kind": "cancelled"}')  # a redelivery: said once
    assert not journal.receive("task-a", 3, {"id": "task-a"})  # the assign, late: not new
    assert journal.received() == []
    assert journal.phase("task-a", 3) == "cancelled"
    assert [r.kind for r in journal.unsent()] == ["cancelled"]
    assert journal.open_task() is not None  # hello names it until the hub has heard
    journal.mark_sent(journal.unsent()[0].seq)
    assert journal.open_task() is None
