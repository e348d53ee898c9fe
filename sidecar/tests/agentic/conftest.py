"""Fixtures of the agent loop tests: the fake model server and a git workspace with a bug."""

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import fake_ollama


@pytest.fixture
async def model() -> AsyncIterator[fake_ollama.FakeModel]:
    async with fake_ollama.serve() as fake:
        yield fake


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A git repository with a bug and the test that shows it."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    (ws / "test_calc.py").write_text(
        "import unittest\n\nimport calc\n\n\n"
        "class AddTest(unittest.TestCase):\n"
        "    def test_add(self):\n        self.assertEqual(calc.add(2, 3), 5)\n"
    )
    for argv in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start"],
    ):
        subprocess.run(argv, cwd=ws, check=True, capture_output=True)
    return ws
