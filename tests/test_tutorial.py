"""The first-task tutorial in docs/getting-started.md, run as written on a fresh home: every
block marked `<!-- tutorial -->` runs in bash in one new directory, in order, as a user pastes
it; a block marked `<!-- tutorial: background … -->` is a terminal left running (`agentcom up`
through `up_stack.Stack`, which runs exactly that command; any other with bash, until its
output shows the text the marker names). Only the port offset is the test's own, so the stack
does not collide with another test's, and `OLLAMA_URL`, which the second part's block reads:
the fake model server of the tests (`tests/servers/fake_ollama.py`) stands in for Ollama,
playing a model that reads calc.py, writes the fix and says so.
"""

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import fake_ollama
from agentcom_common.testing import eventually, shared_tmpdir
from up_stack import Stack, cli_env, free_offset, wait_all_ready, wait_until

pytestmark = pytest.mark.system

DOC = Path(__file__).resolve().parents[1] / "docs" / "getting-started.md"
MARKED = re.compile(
    r'<!-- tutorial(?P<background>: background(?: until "(?P<until>[^"]+)")?)? -->\n'
    r"```sh\n(?P<text>.*?)```",
    re.DOTALL,
)
# a block may wait on the whole pipeline (a task, verified and pushed) on a loaded machine
BLOCK_TIMEOUT = 600


@dataclass
class Block:
    text: str
    background: bool
    until: str | None


def tutorial_blocks(section: str = "## Your first task") -> list[Block]:
    page = DOC.read_text().split(section, 1)[1].split("\n## ", 1)[0]
    return [
        Block(m["text"], m["background"] is not None, m["until"]) for m in MARKED.finditer(page)
    ]


class Terminal:
    """A block left running, as in its own terminal: its output in a file, its process group
    stopped at the end as Ctrl-C would."""

    def __init__(self, block: Block, cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("w") as out:
            self.process = subprocess.Popen(
                ["bash", "-c", block.text],
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if block.until:
            until = block.until
            wait_until(lambda: self._shows(until), 120, f"{until!r} in {log}")

    def _shows(self, text: str) -> bool:
        assert self.process.poll() is None, self.log.read_text()
        return text in self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture
def user_dir() -> Iterator[Path]:
    # entered by Postgres's own account when the tests run as root
    made = shared_tmpdir("agentcom-tutorial-")
    yield made
    shutil.rmtree(made, ignore_errors=True)


FIXED = "def add(a, b):\n    return a + b\n"


def run_tutorial(user_dir: Path, offset: int, ollama_url: str) -> list[str]:
    """Every block in order; the stdout of each foreground one."""
    blocks = tutorial_blocks()
    assert [b.text.strip() for b in blocks if b.background] == [
        "agentcom up",
        "agentcom sidecar run --config .agentcom/agents/builder.json",
        "agentcom sidecar run --config .agentcom/agents/coder.json",
    ]
    home = user_dir / ".agentcom"  # the default home, `.agentcom` in the user's directory
    # as with the environment activated: this interpreter's `agentcom` and `python` first
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = cli_env(home, AGENTCOM_PORT_OFFSET=str(offset), PATH=path, OLLAMA_URL=ollama_url)
    up: Stack | None = None
    terminals: list[Terminal] = []
    outputs: list[str] = []
    try:
        for number, block in enumerate(blocks):
            if block.background and block.text.strip() == "agentcom up":
                up = Stack(home, env)
                wait_all_ready(up)
            elif block.background:
                log = user_dir / f"terminal-{number}.log"
                terminals.append(Terminal(block, user_dir, env, log))
            else:
                done = subprocess.run(
                    ["bash", "-euo", "pipefail", "-c", block.text],
                    cwd=user_dir,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=BLOCK_TIMEOUT,
                    check=False,
                )
                logs = [t.log.read_text(errors="replace") for t in terminals]
                assert done.returncode == 0, (block.text, done.stdout, done.stderr, logs)
                outputs.append(done.stdout)
    finally:
        for terminal in reversed(terminals):
            terminal.stop()
        if up is not None:
            up.interrupt()
    return outputs


def once_watched(nats_monitor: str, then: fake_ollama.Turn) -> fake_ollama.Turn:
    """`then`, once `agentcom task watch` has subscribed to the task events (a connection
    without a name, which every service's has, on `agentcom.evt.task.>`). The fake answers at
    once, so without this the loop could end before the watch has started, which a user's
    Ollama (seconds a turn) never does, and the watch would show no tool calls."""

    async def subscribed() -> None:
        async with httpx.AsyncClient() as client:
            got = await client.get(f"{nats_monitor}/connz", params={"subs": "1"})
        assert any(
            not conn.get("name") and "agentcom.evt.task.>" in conn.get("subscriptions_list", [])
            for conn in got.json()["connections"]
        ), got.text

    async def turn(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        await eventually(subscribed, timeout=120, pause=0.2)
        return await then(body)

    return turn


# two whole stacks in turn (shell agent, then the agent loop), each from `agentcom up`: well past
# the suite's 120 s on a loaded 2-core machine, yet a hang still fails
@pytest.mark.timeout(480)
async def test_the_first_task_tutorial_runs_as_written_on_a_fresh_home(user_dir: Path) -> None:
    offset = free_offset()
    nats_monitor = f"http://127.0.0.1:{8222 + offset}"
    async with fake_ollama.serve() as model:
        model.play(
            once_watched(
                nats_monitor,
                fake_ollama.reply(tool_calls=[fake_ollama.call("read_file", path="calc.py")]),
            ),
            fake_ollama.reply(
                tool_calls=[fake_ollama.call("write_file", path="calc.py", content=FIXED)]
            ),
            fake_ollama.reply("Fixed: add() subtracted; it adds now and the test passes."),
        )
        outputs = await asyncio.to_thread(run_tutorial, user_dir, offset, model.url)
    assert len(model.requests) == 3, model.requests  # the loop asked the model, through the gateway

    watched, branch_and_log = outputs[-4], outputs[-3]
    assert "-> completed" in watched, watched
    assert "state: completed" in watched, watched
    # `task show`'s result line names the branch pushed and its commit
    shown = re.search(r'"branch": "(agentcom/builder/task-[^"]+)", "commit": "(\w+)"', watched)
    assert shown, watched
    assert '"pushed": true' in watched, watched
    assert f"branch: {shown[1]}" in watched, watched  # the work's branch, not the base asked for
    assert f"commit: {shown[2]}" in watched, watched
    assert shown[1] in branch_and_log, branch_and_log
    assert f"commit {shown[2]}" in branch_and_log, branch_and_log
    assert "+    return a + b" in branch_and_log, branch_and_log
    main = await asyncio.to_thread(
        subprocess.run,
        ["git", "-C", str(user_dir / "calc.git"), "show", "HEAD:calc.py"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "return a - b" in main.stdout  # the user's branch is untouched

    looped = outputs[-1]
    assert "tool read_file(" in looped, looped
    assert "tool write_file(" in looped, looped
    assert "-> completed" in looped, looped
    assert "agentcom/coder/task-" in looped, looped  # its branch, pushed
    assert "+    return a + b" in looped, looped
