"""Two dashboard replicas on one Postgres and one NATS: the leader alone judges the alert
rules and sends pushes (one alert, one push), a push waits out a time with no leader, every
replica lists the alert, and the page's live socket works from either."""

import json
from typing import Any

from dashboard_stack import Backend, Stack, dead_letter, serve
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from test_push import PushService, push_service, subscribe
from test_socket import next_event
from websockets.asyncio.client import connect

from agentcom_common import subjects
from agentcom_common.service import own_of
from agentcom_common.testing import eventually
from agentcom_dashboard import pushing
from agentcom_dashboard.app import create_app as dashboard_app
from agentcom_dashboard.live import Live

__all__ = ["push_service"]  # the fixture, used here by name


async def test_an_alert_fires_once_and_is_pushed_once_from_two_replicas(
    stack: Stack, push_service: PushService, nc: Client
) -> None:
    fired: list[dict[str, Any]] = []

    async def on_fired(msg: Msg) -> None:
        fired.append(json.loads(msg.data))

    await nc.subscribe("agentcom.evt.alert.fired", cb=on_fired)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
    second_app = dashboard_app(stack.settings)
    async with serve(second_app) as second_url:
        second = own_of(second_app, Live)
        assert (await subscribe(stack, push_service.subscription())).status_code == 201
        task = await dead_letter(stack, nc)
        async with stack.client() as http:  # a fleet with none online: critical at once
            await http.post(f"{stack.scheduler}/api/agents", json={"name": "offline-one"})

        async def pushed() -> None:
            titles = sorted(m["title"] for m in push_service.received)
            assert titles == ["CRITICAL: no_agents_online", "Task dead-lettered"], titles

        await eventually(pushed, timeout=20)
        # both replicas judge again and again after it fired: a second judge would fire now
        for live in (stack.live, second):
            target = live.history.taken + 5

            async def judged(live: Live = live, target: int = target) -> None:
                assert live.history.taken >= target

            await eventually(judged, timeout=20)
        rules = [f["rule_id"] for f in fired]  # the dead letter also fires high_failure_rate
        assert "no_agents_online" in rules
        assert len(rules) == len(set(rules)), rules
        assert sorted(m["title"] for m in push_service.received) == [
            "CRITICAL: no_agents_online",
            "Task dead-lettered",
        ]
        assert [stack.live.is_leader, second.is_leader].count(True) == 1
        for url in (stack.dashboard, second_url):  # every replica lists it
            async with stack.client() as http:
                listed = (await http.get(f"{url}/api/dashboard/alerts")).json()
            assert sorted(a["rule_id"] for a in listed) == sorted(rules)
        assert task["id"] in {m["body"].removeprefix("task ") for m in push_service.received}


async def test_a_dead_letter_while_no_replica_leads_is_pushed_by_the_next_leader(
    backend: Backend, push_service: PushService, nc: Client, js: JetStreamContext
) -> None:
    async with backend.dashboard() as first:
        assert (await subscribe(first, push_service.subscription())).status_code == 201

        async def reading() -> None:  # the leader has made the push consumer
            await js.consumer_info(subjects.EVENTS_STREAM, pushing.CONSUMER)

        await eventually(reading, timeout=20)
    # no dashboard runs now: before, an event nobody led for was never pushed
    task = await dead_letter(first, nc)
    assert push_service.received == []
    async with backend.dashboard():

        async def pushed() -> None:
            assert [m["body"] for m in push_service.received] == [f"task {task['id']}"]

        await eventually(pushed, timeout=20)
    assert push_service.refused == []


async def test_the_live_socket_works_from_either_replica(
    stack: Stack, js: JetStreamContext
) -> None:
    """Each replica follows the event stream itself: a browser on either sees every event."""
    second_app = dashboard_app(stack.settings)
    async with serve(second_app) as second_url:
        urls = [u.replace("http://", "ws://") + "/ws" for u in (stack.dashboard, second_url)]
        async with connect(urls[0]) as one, connect(urls[1]) as two:
            for ws in (one, two):
                assert json.loads(await ws.recv(decode=True))["type"] == "hello"
            sent = await js.publish("agentcom.evt.test.fanout", b'{"n": 1}')
            seen = [await next_event(ws) for ws in (one, two)]
    assert [(e["seq"], e["data"]) for e in seen] == [(sent.seq, {"n": 1})] * 2
