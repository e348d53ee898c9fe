"""The browser socket: events in stream order, and a reconnect resumes with no gap."""

import json
from typing import Any

import pytest
from dashboard_stack import Stack
from nats.js import JetStreamContext
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus


def ws_url(stack: Stack, query: str = "") -> str:
    return stack.dashboard.replace("http://", "ws://") + "/ws" + query


async def next_event(ws: ClientConnection) -> dict[str, Any]:
    """The next event this test published: the services of the stack publish their own
    (a sweep, a start) into the same stream at any moment, and those are not the test's."""
    while True:
        body = json.loads(await ws.recv(decode=True))
        if body["type"] == "event" and body["subject"].startswith("agentcom.evt.test."):
            return body


async def test_reconnect_with_last_seq_misses_no_event(stack: Stack, js: JetStreamContext) -> None:
    first = await js.publish("agentcom.evt.test.one", b'{"n": 0}')
    async with connect(ws_url(stack, f"?after={first.seq - 1}")) as ws:
        hello = json.loads(await ws.recv(decode=True))
        assert hello == {"type": "hello", "after": first.seq - 1}
        seen = await next_event(ws)
    assert seen["seq"] == first.seq
    assert seen["data"] == {"n": 0}

    missed = [
        await js.publish("agentcom.evt.test.one", json.dumps({"n": n}).encode())
        for n in range(1, 6)
    ]

    async with connect(ws_url(stack, f"?after={seen['seq']}")) as ws:
        replayed = [await next_event(ws) for _ in missed]
        live = await js.publish("agentcom.evt.test.one", b'{"n": 6}')
        after = await next_event(ws)

    assert [e["seq"] for e in replayed] == [ack.seq for ack in missed]
    assert [e["data"]["n"] for e in replayed] == [1, 2, 3, 4, 5]
    assert after["seq"] == live.seq


async def test_socket_without_after_starts_at_now(stack: Stack, js: JetStreamContext) -> None:
    old = await js.publish("agentcom.evt.test.old", b"{}")
    async with connect(ws_url(stack)) as ws:
        hello = json.loads(await ws.recv(decode=True))
        new = await js.publish("agentcom.evt.test.new", b"{}")
        event = await next_event(ws)
    assert event["seq"] == new.seq  # the old one is not replayed
    assert old.seq <= hello["after"] < new.seq


async def test_socket_from_another_site_is_refused(stack: Stack) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(stack), origin="http://evil.example"):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("after", [-1, 2**64])
async def test_socket_with_a_bad_after_is_422_naming_it(stack: Stack, after: int) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(stack, f"?after={after}")):
            pass
    assert refused.value.response.status_code == 422
    assert json.loads(refused.value.response.body or b"{}")["field"] == "after"
