"""`RepoCache`: mirrors of real bare repos made in tmp_path, read at HEAD."""

import os
import subprocess
from pathlib import Path

import pytest

from agentcom_common.errors import InvalidError
from agentcom_hubfsm.repocache import RepoCache, RepoUnavailableError, directory_for


def git(*args: str, cwd: Path) -> str:
    env = os.environ | {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_GLOBAL": "/dev/null",  # the test's own git: no hook test config
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout


def commit(seed: Path, bare: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        (seed / name).parent.mkdir(parents=True, exist_ok=True)
        (seed / name).write_text(text)
    git("add", "-A", cwd=seed)
    git("commit", "--quiet", "-m", message, cwd=seed)
    git("push", "--quiet", str(bare), "main", cwd=seed)


@pytest.fixture
def origin(tmp_path: Path) -> tuple[Path, Path]:
    """(bare remote, the clone that pushes to it), `main` holding two commits."""
    bare, seed = tmp_path / "origin.git", tmp_path / "seed"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare), cwd=tmp_path)
    git("init", "--quiet", "--initial-branch=main", str(seed), cwd=tmp_path)
    commit(seed, bare, {"README.md": "# Demo\n" + "x" * 100, "src/app.py": "print()\n"}, "first")
    commit(seed, bare, {"tests/test_app.py": "def test(): pass\n"}, "add a test")
    return bare, seed


async def test_a_snapshot_reads_tree_readme_and_history_at_head(
    tmp_path: Path, origin: tuple[Path, Path]
) -> None:
    bare, seed = origin
    cache = RepoCache(tmp_path / "cache", readme_limit=10)
    shot = await cache.snapshot(str(bare))
    assert shot.head == git("rev-parse", "HEAD", cwd=seed).strip()
    assert shot.files == ("README.md", "src/app.py", "tests/test_app.py")
    assert shot.readme == ("README.md", "# Demo\nxxx")
    assert [line.split(" ", 1)[1] for line in shot.history] == ["add a test", "first"]
    assert (directory_for(tmp_path / "cache", str(bare)) / "HEAD").is_file()


async def test_the_next_snapshot_fetches_what_was_pushed_since(
    tmp_path: Path, origin: tuple[Path, Path]
) -> None:
    bare, seed = origin
    cache = RepoCache(tmp_path / "cache")
    await cache.snapshot(str(bare))
    commit(seed, bare, {"src/new.py": "x = 1\n"}, "third")
    shot = await cache.snapshot(str(bare))
    assert "src/new.py" in shot.files
    assert shot.history[0].endswith(" third")


async def test_an_empty_repo_has_no_head_and_no_files(tmp_path: Path) -> None:
    bare = tmp_path / "empty.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare), cwd=tmp_path)
    shot = await RepoCache(tmp_path / "cache").snapshot(str(bare))
    assert (shot.head, shot.files, shot.readme, shot.history) == (None, (), None, ())


async def test_an_unreachable_repo_is_unavailable_and_leaves_no_mirror(tmp_path: Path) -> None:
    cache = RepoCache(tmp_path / "cache")
    with pytest.raises(RepoUnavailableError) as caught:
        await cache.snapshot(str(tmp_path / "missing.git"))
    assert caught.value.code == "repo_unavailable"
    assert caught.value.detail.startswith(f"clone {tmp_path / 'missing.git'}: git clone exited")
    assert list((tmp_path / "cache").iterdir()) == []


@pytest.mark.parametrize(
    "url", ["https://bob:hunter2@git.example/app.git", "https://ghp_token@github.com/o/r"]
)
async def test_a_url_with_credentials_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(InvalidError) as caught:
        await RepoCache(tmp_path / "cache").snapshot(url)
    assert caught.value.field == "repo"
    assert "hunter2" not in caught.value.detail
    assert not (tmp_path / "cache").exists()


async def test_no_hook_runs_whatever_the_git_config_says(
    tmp_path: Path, origin: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    bare, seed = origin
    hooks, ran = tmp_path / "hooks", tmp_path / "hook-ran"
    hooks.mkdir()
    hook = hooks / "reference-transaction"  # git runs it on every ref update (clone, fetch)
    hook.write_text(f"#!/bin/sh\ntouch {ran}\n")
    hook.chmod(0o755)
    config = tmp_path / "gitconfig"
    config.write_text(f"[core]\n\thooksPath = {hooks}\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    cache = RepoCache(tmp_path / "cache")
    await cache.snapshot(str(bare))
    commit(seed, bare, {"more.txt": "x"}, "more")
    await cache.snapshot(str(bare))
    assert not ran.exists()
