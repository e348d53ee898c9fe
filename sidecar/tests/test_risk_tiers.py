"""Risk tiers at delivery, through the real hub and sidecar and a fake GitHub: in a repo that
allows it, a tier-1 change is merged at its own head; a tier-3 change is a draft, not merged."""

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from agentcom_common.contracts.delivery import DeliveryReport
from agentcom_common.testing import eventually
from agentcom_sidecar.config import SidecarConfig
from agentcom_sidecar.runner import Sidecar

RunSidecar = Callable[[SidecarConfig], AbstractAsyncContextManager[Sidecar]]


def writes(*paths: str) -> list[str]:
    """A shell task writing one small line into each of `paths`."""
    script = 'for p in "$@"; do mkdir -p "$(dirname "$p")"; echo "x = 1" > "$p"; done'
    return ["sh", "-c", script, "sh", *paths]


async def delivered(
    hub: Any, description: str, *paths: str
) -> tuple[dict[str, Any], DeliveryReport]:
    made = await hub.submit(
        description=description,
        repo=hub.repo,
        metadata={"command": writes(*paths)},
        verification_steps=[{"type": "file_exists", "path": paths[0]}],
    )

    async def check() -> dict[str, Any]:
        task = await hub.task(made["id"])
        assert task["state"] == "completed", task
        return task

    task = await eventually(check, timeout=90)  # a whole run with its checks; 2 busy cores
    return task, DeliveryReport.model_validate(task["result"]["delivery"])


async def test_a_tier_1_change_merges_and_a_tier_3_change_is_a_draft(
    hub: Any, run_sidecar: RunSidecar, origin: Path, github: Any
) -> None:
    hub.repo = str(origin)
    repo = {"url": str(origin), "github": "acme/widgets", "auto_merge": True, "ci": False}
    config = await hub.agent(
        "tiers", allow_hub_commands=True, repos=[repo], github_api_url=github.url
    )
    async with run_sidecar(config):
        small, small_report = await delivered(hub, "Small fix", "src/app.py", "tests/test_app.py")
        ci, ci_report = await delivered(
            hub, "Touch CI", ".github/workflows/ci.yml", "tests/test_ci.py"
        )

    assert small_report.risk is not None
    assert small_report.risk.tier == 1, small_report
    assert (small_report.action, small_report.merged) == ("merge", True)
    assert github.merges == [
        {"number": 1, "merge_method": "squash", "sha": small["result"]["commit"]}
    ]
    assert ci_report.risk is not None
    assert ci_report.risk.tier == 3, ci_report
    assert any("CI config changed" in why for why in ci_report.risk.reasons)
    assert (ci_report.action, ci_report.merged) == ("draft", False)
    assert github.pulls[1]["draft"] is True
    assert github.pulls[1]["merged"] is False
    assert "Tier: **3**" in github.pulls[1]["body"]
    assert ci["result"]["pr_url"] == github.pulls[1]["html_url"]
