"""`agentcom task watch`: one task's states, output lines and tool calls as they happen.

Live from NATS, as the dashboard gets them: the queue's `agentcom.evt.task.<to_state>` events
(`TaskTransition`), and the agent's reports the scheduler relays, `agentcom.evt.task.progress`
(`Progress`: the command's output `lines`) and `agentcom.evt.task.tool_call` (`ToolCallReport`:
`tool`, `arguments`, `result`, `ok`). None of these name the task in the subject, so each body
is read and other tasks' dropped. The task's history over HTTP is read once after subscribing
(nothing between the two is lost) and again every few seconds: events make it fast, the
history makes it sure. Without NATS (no login here) it follows the history alone.
"""

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentcom_cli.console import err, json_line, line
from agentcom_cli.tasks import history_line

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

    from agentcom_common.settings import CommonSettings

Json = dict[str, Any]
TERMINAL = {"completed", "partial_pass", "dead_letter", "cancelled"}


@dataclass
class Feed:
    """What has been printed of one task, so an event and a history row of the same move
    print once."""

    task_id: str
    as_json: bool
    moves: set[tuple[str, str]] = field(default_factory=set[tuple[str, str]])
    state: str = ""

    def moved(self, row: Json) -> None:
        """A history row or a `TaskTransition` event (the same fields)."""
        key = (str(row["to_state"]), str(row["at"]))
        if key in self.moves:
            return
        self.moves.add(key)
        self.state = str(row["to_state"])
        if self.as_json:
            json_line({"kind": "transition"} | row)
        else:
            history_line(row)

    def progress(self, report: Json) -> None:
        if self.as_json:
            json_line(report)
            return
        lines: list[str] = report["lines"]
        for text in lines:
            line(f"  | {text}")
        if report["dropped_lines"]:
            line(f"  | ({report['dropped_lines']} lines dropped to keep up)")

    def tool_call(self, call: Json) -> None:
        if self.as_json:
            json_line(call)
            return
        verdict = "ok" if call["ok"] else f"failed ({call['error_code'] or 'error'})"
        line(
            f"  tool {call['tool']}({call['arguments']}) {verdict} in {call['duration_ms']:.0f} ms"
        )
        if call["result"]:
            line(f"    -> {call['result']}")


def follow(task_id: str, as_json: bool, poll: float) -> str:
    """Print the task's moves (and, with NATS, its output and tool calls) until it ends;
    returns its last state."""
    return asyncio.run(_follow(Feed(task_id, as_json), poll))


async def _follow(feed: Feed, poll: float) -> str:
    from agentcom_cli import place

    events: asyncio.Queue[Msg] = asyncio.Queue()
    nc = await _subscribe(place.settings(), events)
    try:
        while True:
            for row in await asyncio.to_thread(_history, feed.task_id):
                feed.moved(row)
            if feed.state in TERMINAL:
                return feed.state
            stop_at = time.monotonic() + poll
            while feed.state not in TERMINAL and (left := stop_at - time.monotonic()) > 0:
                try:
                    msg = await asyncio.wait_for(events.get(), timeout=left)
                except TimeoutError:
                    break
                _dispatch(feed, msg)
    finally:
        if nc is not None:
            await nc.close()


def _history(task_id: str) -> list[Json]:
    from agentcom_cli import api

    rows: list[Json] = api.call("queue", "GET", f"/api/tasks/{task_id}/history")
    return rows


def _dispatch(feed: Feed, msg: "Msg") -> None:
    from pydantic import ValidationError

    from agentcom_common import subjects
    from agentcom_common.contracts import EVENTS

    contract = EVENTS.get(msg.subject)
    if contract is None:
        return
    try:
        body = contract.model_validate_json(msg.data).model_dump(mode="json")
    except ValidationError:
        return  # not a body this version reads; the history still tells the moves
    if body.get("task_id") != feed.task_id:
        return
    if msg.subject == subjects.TASK_PROGRESS:
        feed.progress(body)
    elif msg.subject == subjects.TASK_TOOL_CALL:
        feed.tool_call(body)
    else:
        feed.moved(body)


async def _subscribe(settings: "CommonSettings", events: "asyncio.Queue[Msg]") -> "Client | None":
    """A subscription to every task event, or None (with a warning) when NATS is not
    reachable from here."""
    from agentcom_cli import stack
    from agentcom_common import messaging, natsauth, subjects

    url = stack.hub_nats_url(settings)
    try:
        nc = await messaging.connect_once(url, timeout=5)
    except Exception as exc:  # noqa: BLE001 - any failure means "no live feed"; say which
        shown = natsauth.redact(url)
        err().print(f"cannot reach NATS at {shown} ({type(exc).__name__}): states only")
        return None

    async def queued(msg: "Msg") -> None:
        events.put_nowait(msg)

    await nc.subscribe(subjects.TASK_EVENTS, cb=queued)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
    await nc.flush()  # subscribed at the server before the history is read
    return nc
