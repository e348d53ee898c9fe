"""`/ws?after=<seq>`: every event on `agentcom.evt.>` after stream sequence `seq`, as JSON.

Each socket has its own ordered consumer starting at `seq + 1`, so a browser that reconnects
with the last sequence it saw gets exactly what it missed, in order, without a gap. The socket
only carries events out: every action is an HTTP request with an admin session and a CSRF
token. A socket from another site (its Origin is not our host) is refused, and when viewing
needs a login (`DashboardSettings.login_to_view`) so is one without a session.
"""

import asyncio
import contextlib
import json
import logging

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from agentcom_common.errors import AgentcomError, InvalidError
from agentcom_common.web import problem
from agentcom_dashboard import events
from agentcom_dashboard.access import check_origin, get_live, viewer

log = logging.getLogger(__name__)
router = APIRouter()
MAX_SEQ = 2**63 - 1
BACKLOG = 10_000  # events a slow browser may fall behind before it is dropped (it resumes)


@router.websocket("/ws")
async def follow_events(ws: WebSocket, after: int | None = None) -> None:
    """Stream events after `after` (default: from now) as `{"seq","subject","at","data"}`."""
    try:
        check_origin(ws)
        await viewer(ws)
        if after is not None and not 0 <= after <= MAX_SEQ:  # NATS refuses past uint64
            raise InvalidError(f"after: a stream sequence, 0 to {MAX_SEQ}", field="after")
    except AgentcomError as exc:
        await _refuse(ws, exc)
        return
    live = get_live(ws)
    await ws.accept()
    pending: asyncio.Queue[events.Event] = asyncio.Queue(BACKLOG)

    async def enqueue(event: events.Event) -> None:
        if pending.full():  # too slow to keep up: it reconnects with its last seq and resumes
            with contextlib.suppress(Exception):
                await ws.close(code=1013, reason="too far behind; reconnect with after=<seq>")
            return
        pending.put_nowait(event)

    start = after if after is not None else await events.last_sequence(live.res.js)
    subscription = await events.follow(live.res.js, enqueue, after_seq=start)
    live.sockets += 1
    try:
        await ws.send_text(json.dumps({"type": "hello", "after": start}))
        async with asyncio.TaskGroup() as group:
            pump = group.create_task(_pump(ws, pending))
            await _until_closed(ws)
            pump.cancel()
    except* (WebSocketDisconnect, RuntimeError):
        pass  # the browser went away (or we closed a slow one): nothing to clean up but ours
    finally:
        live.sockets -= 1
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()


async def _refuse(ws: WebSocket, exc: AgentcomError) -> None:
    """Refuse the handshake with the error's status and JSON body where the server can send
    one (uvicorn can); else close with 4000 + status and the code as the reason."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(problem(exc.status, exc.code, exc.detail, exc.field))
    else:
        await ws.close(code=4000 + exc.status, reason=exc.code)


async def _pump(ws: WebSocket, pending: asyncio.Queue[events.Event]) -> None:
    while True:
        event = await pending.get()
        await ws.send_text(json.dumps({"type": "event"} | event.as_json()))


async def _until_closed(ws: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await ws.receive_text()  # the client sends nothing we act on; this notices a close
