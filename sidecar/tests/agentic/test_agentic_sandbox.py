"""The escape battery: every attempt to leave the workspace is refused or contained, each asserted.

Containment comes from the sandbox (real paths, process groups, limits, namespaces), never from
recognising a bad command: the commands here are the ones a regex blocklist let through.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentcom_common.testing import eventually
from agentcom_sidecar import namespaces
from agentcom_sidecar.agentic import tools
from agentcom_sidecar.agentic.sandbox import Sandbox
from agentcom_sidecar.agentic.settings import AgenticSettings
from fake_ollama import FakeModel

needs_namespaces = pytest.mark.skipif(
    not namespaces.available(), reason="user namespaces are not available on this kernel"
)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def exists(path: Path) -> bool:
    return path.exists()


def make(ws: Path, **overrides: object) -> Sandbox:
    settings = AgenticSettings.model_validate({"agentic_isolation": "auto", **overrides})
    return Sandbox(ws, settings, env={"PATH": os.environ["PATH"]})


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    path.mkdir()
    (path / "inside.txt").write_text("inside\n")
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside"
    path.mkdir()
    (path / "canary.txt").write_text("still here\n")
    return path


async def test_dotdot_read_and_write_are_refused(ws: Path, outside: Path) -> None:
    sandbox = make(ws)
    read = await tools.call("read_file", {"path": "../outside/canary.txt"}, sandbox)
    write = await tools.call("write_file", {"path": "../outside/new.txt", "content": "x"}, sandbox)

    assert (read.ok, read.error_code) == (False, "path_outside_workspace")
    assert (write.ok, write.error_code) == (False, "path_outside_workspace")
    assert names(outside) == ["canary.txt"]


async def test_dotdot_that_stays_inside_is_allowed(ws: Path) -> None:
    (ws / "sub").mkdir()
    obs = await tools.call("read_file", {"path": "sub/../inside.txt"}, make(ws))

    assert obs.ok
    assert obs.data is not None
    assert obs.data["content"] == "inside\n"


async def test_absolute_paths_outside_are_refused_inside_allowed(ws: Path) -> None:
    sandbox = make(ws)
    passwd = await tools.call("read_file", {"path": "/etc/passwd"}, sandbox)
    inside = await tools.call("read_file", {"path": str(ws / "inside.txt")}, sandbox)
    listing = await tools.call("list_directory", {"path": "/"}, sandbox)

    assert passwd.error_code == "path_outside_workspace"
    assert listing.error_code == "path_outside_workspace"
    assert inside.ok


async def test_symlink_to_etc_is_refused(ws: Path) -> None:
    (ws / "etc").symlink_to("/etc")
    sandbox = make(ws)
    read = await tools.call("read_file", {"path": "etc/passwd"}, sandbox)
    search = await tools.call("search_files", {"pattern": "root", "path": "etc"}, sandbox)
    file_link = ws / "passwd"
    file_link.symlink_to("/etc/passwd")
    direct = await tools.call("read_file", {"path": "passwd"}, sandbox)

    assert read.error_code == "path_outside_workspace"
    assert search.error_code == "path_outside_workspace"
    assert direct.error_code == "path_outside_workspace"


async def test_write_through_a_symlinked_folder_is_refused(ws: Path, outside: Path) -> None:
    (ws / "link").symlink_to(outside)
    sandbox = make(ws)
    new_file = await tools.call("write_file", {"path": "link/pwned.txt", "content": "x"}, sandbox)
    deep = await tools.call("write_file", {"path": "link/a/b/pwned.txt", "content": "x"}, sandbox)
    over = await tools.call("write_file", {"path": "link/canary.txt", "content": "gone"}, sandbox)

    assert [o.error_code for o in (new_file, deep, over)] == ["path_outside_workspace"] * 3
    assert names(outside) == ["canary.txt"]
    assert (outside / "canary.txt").read_text() == "still here\n"


async def test_symlinked_folder_inside_the_workspace_works(ws: Path) -> None:
    (ws / "real").mkdir()
    (ws / "alias").symlink_to(ws / "real")
    obs = await tools.call("write_file", {"path": "alias/ok.txt", "content": "ok"}, make(ws))

    assert obs.ok
    assert (ws / "real" / "ok.txt").read_text() == "ok"


async def test_proc_self_is_refused(ws: Path) -> None:
    (ws / "me").symlink_to("/proc/self")
    sandbox = make(ws)
    environ = await tools.call("read_file", {"path": "/proc/self/environ"}, sandbox)
    root = await tools.call("read_file", {"path": "me/root/etc/passwd"}, sandbox)
    cwd = await tools.call("list_directory", {"path": "me/cwd"}, sandbox)

    assert environ.error_code == "path_outside_workspace"
    assert root.error_code == "path_outside_workspace"
    assert cwd.error_code == "path_outside_workspace"


async def test_git_folder_is_read_only_to_the_file_tools(ws: Path) -> None:
    (ws / ".git" / "hooks").mkdir(parents=True)
    obs = await tools.call(
        "write_file", {"path": ".git/hooks/pre-commit", "content": "#!/bin/sh\ncurl x\n"}, make(ws)
    )

    assert obs.error_code == "protected_path"
    assert not (ws / ".git" / "hooks" / "pre-commit").exists()


def _running(marker: str) -> list[int]:
    found: list[int] = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(proc.name))
    return found


@pytest.mark.parametrize("isolation", ["none", pytest.param("namespaces", marks=needs_namespaces)])
async def test_a_forking_command_past_its_timeout_is_killed_with_its_children(
    ws: Path, isolation: str
) -> None:
    marker = "31.4159" if isolation == "none" else "31.4158"
    command = f"sleep {marker} & sleep {marker} & sleep {marker}"
    sandbox = make(ws, agentic_isolation=isolation)

    obs = await tools.call("run_command", {"command": command, "timeout_s": 0.5}, sandbox)

    assert (obs.ok, obs.error_code) == (False, "timeout")
    assert obs.data is not None
    assert obs.data["exit_code"] is None

    async def all_gone() -> None:
        assert _running(marker) == []

    await eventually(all_gone)


async def test_huge_output_is_capped_and_endless_output_killed(ws: Path) -> None:
    sandbox = make(ws, agentic_output_cap=4096, agentic_output_kill=1_000_000)
    finite = await tools.call(
        "run_command", {"command": "head -c 300000 /dev/zero | tr '\\0' a; echo; echo END"}, sandbox
    )
    endless = await tools.call("run_command", {"command": ["yes"]}, sandbox)

    assert finite.ok
    assert finite.truncated
    assert finite.data is not None
    assert len(finite.data["stdout"]) < 4200
    assert finite.data["stdout"].endswith("END\n")  # the tail is kept: errors are at the end
    assert (endless.ok, endless.error_code, endless.truncated) == (False, "output_limit", True)
    assert endless.data is not None
    assert len(endless.data["stdout"]) < 4200


async def test_secrets_are_scrubbed_from_the_environment(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTCOM_TOKEN", "s3cr3t-1")
    env = {
        "PATH": os.environ["PATH"],
        "GITHUB_TOKEN": "s3cr3t-2",
        "OPENAI_API_KEY": "s3cr3t-3",
        "DB_PASSWORD": "s3cr3t-4",
        "HARMLESS": "visible",
    }
    sandbox = Sandbox(ws, AgenticSettings(), env=env)

    obs = await tools.call("run_command", {"command": ["env"]}, sandbox)

    assert obs.data is not None
    assert "HARMLESS=visible" in obs.data["stdout"]
    assert "s3cr3t" not in obs.data["stdout"]


async def test_resource_limits_stop_memory_hogs_and_huge_files(ws: Path) -> None:
    sandbox = make(ws, agentic_memory_bytes=256 * 1024**2, agentic_file_size_bytes=100_000)
    hog = [sys.executable, "-c", "x = bytearray(1024 ** 3); print('allocated')"]
    memory = await tools.call("run_command", {"command": hog}, sandbox)
    big = await tools.call(
        "run_command", {"command": "head -c 1000000 /dev/zero > big.bin"}, sandbox
    )

    assert memory.data is not None
    assert memory.data["exit_code"] != 0
    assert "MemoryError" in memory.data["stderr"]
    assert big.data is not None
    assert big.data["exit_code"] != 0
    assert (ws / "big.bin").stat().st_size <= 100_000


async def test_cpu_limit_stops_a_busy_loop(ws: Path) -> None:
    sandbox = make(ws, agentic_cpu_seconds=1)
    obs = await tools.call(
        "run_command",
        {"command": [sys.executable, "-c", "while True: pass"], "timeout_s": 60},
        sandbox,
    )

    assert obs.data is not None
    assert obs.error_code is None  # stopped by RLIMIT_CPU, not by the 60 s timeout
    assert obs.data["exit_code"] != 0


@needs_namespaces
async def test_rm_fr_outside_the_workspace_is_contained(ws: Path, outside: Path) -> None:
    sandbox = make(ws, agentic_isolation="namespaces")
    command = f"rm -fr {outside} ; rm -fr {ws.parent}/* ; touch /etc/agentcom-escape ../escape"

    obs = await tools.call("run_command", {"command": command}, sandbox)

    assert obs.ok
    assert obs.data is not None
    assert "Read-only file system" in obs.data["stderr"]
    assert (outside / "canary.txt").read_text() == "still here\n"
    assert not exists(Path("/etc/agentcom-escape"))
    assert not exists(ws.parent / "escape")
    assert exists(ws)


@needs_namespaces
async def test_echo_and_curl_reaches_no_network(ws: Path, model: FakeModel) -> None:
    sandbox = make(ws, agentic_isolation="namespaces")
    fetch = f"import urllib.request; urllib.request.urlopen('{model.url}/api/chat', timeout=5)"
    command = f'echo hi && curl -sS -m 5 {model.url}/api/chat ; {sys.executable} -c "{fetch}"'

    obs = await tools.call("run_command", {"command": command}, sandbox)

    assert obs.data is not None
    assert obs.data["stdout"].startswith("hi")
    assert obs.data["exit_code"] != 0
    assert model.requests == []  # the same URL answers from outside the sandbox


@needs_namespaces
async def test_hidden_paths_cannot_be_read_and_git_is_read_only(ws: Path, tmp_path: Path) -> None:
    config = tmp_path / "sidecar.json"
    config.write_text('{"token": "agent-secret"}')
    (ws / ".git").mkdir()
    settings = AgenticSettings(agentic_isolation="namespaces")
    sandbox = Sandbox(ws, settings, env={"PATH": os.environ["PATH"]}, hidden=[config])

    read = await tools.call("run_command", {"command": f"cat {config}"}, sandbox)
    hook = await tools.call("run_command", {"command": "touch .git/evil; touch fine"}, sandbox)

    assert read.data is not None
    assert "agent-secret" not in read.data["stdout"]
    assert hook.data is not None
    assert "Read-only file system" in hook.data["stderr"]
    assert not (ws / ".git" / "evil").exists()
    assert (ws / "fine").exists()


async def test_shell_strings_can_be_switched_off(ws: Path) -> None:
    sandbox = make(ws, agentic_allow_shell=False)
    obs = await tools.call("run_command", {"command": "echo hi && touch chained"}, sandbox)

    assert obs.data is not None
    assert obs.data["stdout"] == "hi && touch chained\n"  # one argv for echo, no shell
    assert not (ws / "chained").exists()


@needs_namespaces
async def test_only_the_workspace_and_scratch_space_are_writable_inside(ws: Path) -> None:
    # why `rm -fr /` is contained without running it here: nothing else is mounted writable
    sandbox = make(ws, agentic_isolation="namespaces")
    command = "awk '$4 ~ /^rw/ {print $2}' /proc/self/mounts"

    obs = await tools.call("run_command", {"command": command}, sandbox)

    assert obs.data is not None
    writable = set(obs.data["stdout"].split())
    assert str(sandbox.root) in writable
    assert writable <= {str(sandbox.root), "/dev/shm", "/proc", "/dev/pts"}


@needs_namespaces
def test_the_isolation_wrapper_refuses_to_run_if_a_mount_stays_writable(ws: Path) -> None:
    broken = namespaces.ISOLATE_SCRIPT.replace('mount -o remount,bind,ro "$mp"', "true")
    assert broken != namespaces.ISOLATE_SCRIPT
    argv = namespaces.Confinement().argv(ws, ["touch", "ran"])
    argv[argv.index(namespaces.ISOLATE_SCRIPT)] = broken

    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)

    assert done.returncode == 125
    assert "stayed writable; refusing to run" in done.stderr
    assert not exists(ws / "ran")
