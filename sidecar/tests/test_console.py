"""The sidecar's terminal: plain lines a person can follow, and failures that get rarer lines."""

import re
from collections.abc import Callable
from typing import Any

from agentcom_common.testing import eventually
from agentcom_sidecar import console

STAMP = r"^\d\d:\d\d:\d\d "


async def test_a_running_sidecar_says_it_is_waiting_then_each_task_start_and_end(
    hub: Any, processes: Callable[..., Any]
) -> None:
    config = await hub.agent("talker", allow_hub_commands=True)
    process = processes(config)
    log = config.path.parent / "sidecar.log"

    def lines() -> str:
        return log.read_text() if log.exists() else ""

    async def waiting() -> None:
        assert re.search(
            STAMP + rf"connected as talker to {re.escape(config.nats_url)}, waiting for work$",
            lines(),
            re.M,
        ), lines()

    await eventually(waiting, timeout=60)
    made = await hub.submit(metadata={"command": ["true"]})

    async def told() -> None:
        text = lines()
        assert re.search(STAMP + rf"task {made['id']} started \(shell, attempt 1\)$", text, re.M)
        assert re.search(STAMP + rf"task {made['id']} completed$", text, re.M), text

    await eventually(told, timeout=60)
    process.stop()


def test_a_failure_that_repeats_is_told_ever_more_rarely() -> None:
    repeats = console.Repeats()
    told = [n for n in range(1, 101) if repeats.failed()]
    assert told == [1, 2, 4, 8, 16, 32, 64]
    assert repeats.reset() >= 0
    assert repeats.failed()  # after a recovery the next failure is told at once
