"""What a task plants in `.git` never runs in the sidecar's own git, and never sees the token."""

import base64
import subprocess
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from agentcom_common.testing import eventually
from agentcom_sidecar.config import SidecarConfig
from agentcom_sidecar.runner import Sidecar
from agentcom_sidecar.workspaces import directory_for

RunSidecar = Callable[[SidecarConfig], AbstractAsyncContextManager[Sidecar]]

TOKEN = "ghp_" + "hooked" * 6
HOOKS = (
    "pre-commit",
    "prepare-commit-msg",
    "commit-msg",
    "post-commit",
    "pre-push",
    "post-checkout",
    "reference-transaction",
)
# run by the task: every hook the sidecar's commit, push or next checkout would run, a
# core.fsmonitor command (run by git add and git status), each dumping its environment
PLANT = """set -e
loot="$1"
mkdir -p .git/hooks
for hook in $HOOKS; do
  printf '#!/bin/sh\\nenv > "%s/%s-$$"\\n' "$loot" "$hook" > ".git/hooks/$hook"
  chmod +x ".git/hooks/$hook"
done
printf '#!/bin/sh\\nenv > "%s/fsmonitor-$$"\\n' "$loot" > "$loot/../fsmonitor.sh"
chmod +x "$loot/../fsmonitor.sh"
git config core.fsmonitor "$loot/../fsmonitor.sh"
env > "$loot/task-env"
echo planted > planted.txt
"""


async def finished(hub: Any, task_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any]:
        task = await hub.task(task_id)
        assert task["state"] == "completed", task.get("result")
        return task

    return await eventually(check, timeout=90)  # a whole run with its checks; 2 busy cores


async def test_hooks_and_config_a_task_plants_never_run_and_never_see_the_token(
    hub: Any, run_sidecar: RunSidecar, origin: Path, github: Any, tmp_path: Path
) -> None:
    loot = tmp_path / "loot"
    loot.mkdir()
    config = await hub.agent(
        "planted",
        allow_hub_commands=True,
        # unisolated, as on a machine without user namespaces: sandboxed, .git is read-only
        # and nothing could be planted; the sidecar's own git must hold without that
        shell_isolation="none",
        repos=[{"url": str(origin), "github": "acme/widgets"}],
        github_token=TOKEN,
        github_api_url=github.url,
    )
    plant = ["sh", "-c", f"HOOKS='{' '.join(HOOKS)}'\n{PLANT}", "plant", str(loot)]
    async with run_sidecar(config):
        first = await hub.submit(
            description="Plant hooks",
            repo=str(origin),
            metadata={"command": plant},
            verification_steps=[{"type": "git_clean"}],  # the check stages too (git add -A)
        )
        planted = await finished(hub, first["id"])
        later = await hub.submit(
            description="A later task",
            repo=str(origin),
            metadata={"command": ["sh", "-c", "echo later > later.txt"]},
        )
        after = await finished(hub, later["id"])

    assert planted["result"]["pushed"] is True  # the sidecar committed and pushed past them
    assert planted["result"]["pr_url"].endswith("/pull/1")
    assert after["result"]["pushed"] is True
    assert sorted(p.name for p in loot.iterdir()) == ["task-env"]  # no hook, no fsmonitor ran
    workspace = directory_for(config.workspaces, str(origin))
    assert not (workspace / ".git" / "hooks").exists()
    kept = _config(workspace / ".git" / "config")
    assert "fsmonitor" not in kept
    assert "remote." not in kept  # the sidecar pushes to its configured URL, no remote's
    basic = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    assert _holding(tmp_path, (TOKEN, basic)) == [config.path]  # the config file, nothing else


def _config(path: Path) -> str:
    listed = ["git", "config", "--file", str(path), "--list"]
    return subprocess.run(listed, check=True, capture_output=True, text=True).stdout


def _holding(root: Path, needles: tuple[str, ...]) -> list[Path]:
    """Every file under `root` that holds one of `needles`."""
    return [
        path
        for path in sorted(root.rglob("*"))
        if path.is_file() and any(n.encode() in path.read_bytes() for n in needles)
    ]
