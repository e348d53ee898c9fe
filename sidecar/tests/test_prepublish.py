"""The pre-publication scan, through the real hub and sidecar against a local bare remote: the
planted corpus (sidecar/tests/corpus/planted, listed in planted.json) is caught item by item
and nothing leaves the machine; the clean corpus is pushed with its risk tier. Each run writes
its findings to the test output."""

import json
import re
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from agentcom_common.contracts.delivery import DeliveryReport
from agentcom_common.testing import eventually
from agentcom_sidecar import changes, prepublish
from agentcom_sidecar.config import PrepublishConfig, ScanAllow, SidecarConfig
from agentcom_sidecar.runner import Sidecar

RunSidecar = Callable[[SidecarConfig], AbstractAsyncContextManager[Sidecar]]
CORPUS = Path(__file__).parent / "corpus"
PLANTED: list[dict[str, Any]] = json.loads((CORPUS / "planted.json").read_text())["planted"]
# the test's own settings: a name to look for, and a small size limit for big.bin
SCAN = {"personal_names": ["Jane Doe"], "max_file_bytes": 2048}


def copy_corpus(name: str) -> list[str]:
    """A shell task that copies a corpus into its workspace (and, planted, a 4 KB binary)."""
    # bytecode a tool may have written beside the corpus is not part of it (the scan refuses it)
    script = 'cp -R "$1"/. . && find . -name __pycache__ -prune -exec rm -rf {} +' + (
        " && head -c 4096 /dev/urandom > big.bin" if name == "planted" else ""
    )
    return ["sh", "-c", script, "sh", str(CORPUS / name)]


async def finished(hub: Any, task_id: str, state: str) -> dict[str, Any]:
    async def check() -> dict[str, Any]:
        task = await hub.task(task_id)
        assert task["state"] == state, task
        return task

    return await eventually(check, timeout=90)  # a whole run with its checks; 2 busy cores


def report(title: str, delivery: DeliveryReport, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [f"\n{title}: {len(delivery.findings)} findings"]
    lines += [
        f"  {f.rule:<18} {f.kind:<36} {f.path}{f':{f.line}' if f.line else ''}"
        for f in delivery.findings
    ]
    with capsys.disabled():
        sys.stdout.write("\n".join(lines) + "\n")


def refs(origin: Path) -> list[str]:
    listed = subprocess.run(
        ["git", "ls-remote", str(origin)], check=True, capture_output=True, text=True
    ).stdout
    return sorted(line.split("\t")[1] for line in listed.splitlines())


def planted_texts() -> set[str]:
    """The words of every planted line long enough to be a secret (or a name, or an address)."""
    words: set[str] = set()
    for item in PLANTED:
        if item["line"] is not None:
            text = (CORPUS / "planted" / item["path"]).read_text().splitlines()[item["line"] - 1]
            words |= set(re.findall(r"[A-Za-z0-9+/._-]{10,}", text)) | {"Jane Doe", "jdoe"}
    return words


async def test_every_planted_secret_is_caught_and_nothing_is_pushed(
    hub: Any, run_sidecar: RunSidecar, origin: Path, github: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    config = await hub.agent(
        "scanner",
        allow_hub_commands=True,
        repos=[{"url": str(origin), "github": "acme/widgets"}],
        github_api_url=github.url,
        prepublish=SCAN,
    )
    async with run_sidecar(config):
        made = await hub.submit(
            description="Add the corpus",
            repo=str(origin),
            metadata={"command": copy_corpus("planted")},
            max_retries=0,
        )
        task = await finished(hub, made["id"], "dead_letter")

    delivery = DeliveryReport.model_validate(task["result"]["delivery"])
    report("planted corpus", delivery, capsys)
    found = {(f.path, f.rule, f.line) for f in delivery.findings}
    missed = [p for p in PLANTED if (p["path"], p["rule"], p["line"]) not in found]
    assert not missed, f"planted and not caught: {missed}"
    assert delivery.blocked
    assert delivery.review is None  # a blocked change is not even shown to a reviewing model
    history = await hub.history(made["id"])
    assert "failed" in [h["to_state"] for h in history], history
    assert task["last_error"].startswith("pre-publication scan blocked the push")
    assert task["result"]["pushed"] is False
    # nothing left the machine: no branch on the remote, no pull request asked for
    assert refs(origin) == ["HEAD", "refs/heads/main"]
    assert github.requests == []
    # redacted: no planted text in what the hub stores (fingerprints are SHA-1s)
    stored = json.dumps(task)
    leaked = [w for w in planted_texts() if w in stored]
    assert not leaked, f"planted text in the task: {leaked}"


async def test_the_clean_corpus_is_pushed_with_its_diff_and_risk_tier(
    hub: Any, run_sidecar: RunSidecar, origin: Path, github: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    config = await hub.agent(
        "cleaner",
        allow_hub_commands=True,
        repos=[{"url": str(origin), "github": "acme/widgets"}],
        github_api_url=github.url,
        prepublish=SCAN,
    )
    async with run_sidecar(config):
        made = await hub.submit(
            description="Add the service",
            repo=str(origin),
            metadata={"command": copy_corpus("clean")},
            verification_steps=[{"type": "file_exists", "path": "src/service.py"}],
        )
        task = await finished(hub, made["id"], "completed")

    delivery = DeliveryReport.model_validate(task["result"]["delivery"])
    report("clean corpus", delivery, capsys)
    assert delivery.findings == []
    assert not delivery.blocked
    assert task["result"]["pushed"] is True
    assert f"refs/heads/{task['result']['branch']}" in refs(origin)
    assert delivery.diff is not None
    assert sorted(f.path for f in delivery.diff.files) == [
        ".env.example",
        "README.md",
        "src/service.py",
        "tests/test_service.py",
    ]
    assert delivery.diff.lines_added == sum(f.added for f in delivery.diff.files) > 0
    assert delivery.risk is not None
    # small, tested and verified, but no second model reviewed it: review is opt-in and off here
    assert delivery.risk.tier == 2, delivery.risk
    assert delivery.risk.reasons == ["no review by a second model: none was asked for"]
    assert "Tier: **2**" in github.pulls[0]["body"]
    assert (delivery.action, delivery.merged) == ("review", False)
    assert github.pulls[0]["draft"] is False


async def change_of(tmp_path: Path, files: dict[str, str]) -> changes.Change:
    """A real checkout whose branch adds `files` to a one-commit `main`."""
    repo = tmp_path / "repo"
    env = {"PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(tmp_path)}
    ident = ["-c", "user.name=t", "-c", "user.email=t@example.com"]

    def git(*args: str) -> None:
        subprocess.run(["git", *ident, *args], cwd=repo, env=env, check=True, capture_output=True)

    repo.mkdir()
    git("init", "--quiet", "--initial-branch=main")
    (repo / "README.md").write_text("hello\n")
    git("add", "-A")
    git("commit", "--quiet", "-m", "first")
    git("checkout", "--quiet", "-b", "task")
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git("add", "-A")
    git("commit", "--quiet", "-m", "task")
    return await changes.read(repo, "main", env, 30, 10**6)


async def test_a_pragma_written_by_the_task_does_not_let_a_secret_through(tmp_path: Path) -> None:
    change = await change_of(
        tmp_path, {"k.py": 'KEY = "AKIAQYLPMN5HFIQR7W2D"  # pragma: allowlist secret\n'}
    )

    found = prepublish.scan(change, PrepublishConfig(), ScanAllow())

    assert [(f.rule, f.kind, f.path, f.line) for f in found] == [
        ("secret", "AWS Access Key", "k.py", 1)
    ]


async def test_a_repos_allowlist_lets_through_exactly_what_it_names(tmp_path: Path) -> None:
    change = await change_of(
        tmp_path,
        {
            "fixtures/keys.py": 'KEY = "AKIAQYLPMN5HFIQR7W2D"\n',
            "ops.md": "staging is 10.1.2.3, the owner ops@acme-widgets.com\n",
            "app.py": 'TOKEN = "ghp_RcY5HhGmzwHsLjMqgqAu9r1gXu5tbKNm4e6m"\n',
        },
    )
    rules = PrepublishConfig()
    everything = prepublish.scan(change, rules, ScanAllow())
    on_app = [f.fingerprint for f in everything if f.path == "app.py"]  # token and its entropy

    allowed = ScanAllow(paths=["fixtures/*"], fingerprints=on_app, kinds=["email address"])
    left = prepublish.scan(change, rules, allowed)

    assert {f.path for f in everything} == {"fixtures/keys.py", "ops.md", "app.py"}
    assert len(on_app) == 2
    assert [(f.rule, f.kind, f.path) for f in left] == [
        ("private_address", "private IP address", "ops.md")
    ]
