"""Rate limits, overrides and cut-offs are the deployment's, not a process's: two scheduler
replicas on one Postgres and one NATS draw from the same buckets, an override set on one holds
on the other, and a restart forgives nothing."""

import contextlib
import json
from collections.abc import AsyncGenerator, Callable
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common.service import own_of
from agentcom_common.settings import CommonSettings
from agentcom_common.testing import NatsServer, eventually, running
from agentcom_scheduler.app import create_app
from agentcom_scheduler.loops import Runtime
from agentcom_scheduler.settings import SchedulerSettings

# one token a minute: nothing refills while a test runs
LIMITS: dict[str, Any] = {
    "scheduler_rate_light": 1,
    "scheduler_rate_normal": 1,
    "scheduler_rate_heavy": 1,
    "scheduler_validation_limit": 3,
    "scheduler_validation_cooldowns": (timedelta(minutes=5),),
}

Replica = Callable[[], contextlib.AbstractAsyncContextManager[tuple[FastAPI, httpx.AsyncClient]]]


@contextlib.asynccontextmanager
async def _replica(
    own: SchedulerSettings, token: str
) -> AsyncGenerator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(own)
    async with running(app, "http://scheduler") as client:
        client.headers["Authorization"] = f"Bearer {token}"
        yield app, client


def replicas(settings: CommonSettings, nats_server: NatsServer, admin_token: str) -> Replica:
    """A fresh scheduler process's app each call, all on the test's Postgres and NATS."""
    own = SchedulerSettings.model_validate(
        settings.model_dump()
        | LIMITS
        | {
            "scheduler_nats_issuer_seed": nats_server.auth.issuer_seed,
            "scheduler_sweep_interval": timedelta(milliseconds=50),
        }
    )
    return lambda: _replica(own, admin_token)


def dropped(app: FastAPI, tier: str) -> int:
    runtime = own_of(app, Runtime)
    return runtime.limiter.dropped.get(tier, 0)


async def test_two_replicas_draw_from_one_bucket_share_overrides_and_a_restart_forgives_nothing(
    settings: CommonSettings, nats_server: NatsServer, admin_token: str
) -> None:
    replica = replicas(settings, nats_server, admin_token)
    async with replica() as (_, a), replica() as (_, b):
        made = (await a.post("/api/agents", json={"name": "poller"})).json()
        as_agent = {"Authorization": f"Bearer {made['token']}"}

        assert (await a.get("/api/agents", headers=as_agent)).status_code == 200
        # the other replica has never seen this agent: with a bucket per process it would pass
        refused = await b.get("/api/agents", headers=as_agent)
        assert (refused.status_code, refused.json()["error"]) == (429, "rate_limited")

        raised = await b.put("/api/agents/poller/rate-limits", json={"light": 1000})
        assert raised.json()["light"] == 1000
        shown = (await a.get("/api/agents/poller/rate-limits")).json()
        assert (shown["light"], shown["overridden"]) == (1000, True)
        assert [(await a.get("/api/agents", headers=as_agent)).status_code for _ in range(3)] == [
            200
        ] * 3

        await a.put("/api/agents/poller/rate-limits", json={})  # back to 1/min, a full bucket
        shown = (await b.get("/api/agents/poller/rate-limits")).json()
        assert (shown["light"], shown["overridden"]) == (1, False)
        assert (await b.get("/api/agents", headers=as_agent)).status_code == 200
        assert (await a.get("/api/agents", headers=as_agent)).status_code == 429

    async with replica() as (_, restarted):  # both stopped, a new process: still empty
        assert (await restarted.get("/api/agents", headers=as_agent)).status_code == 429


async def test_heartbeats_consumed_by_two_replicas_count_against_one_rate(
    settings: CommonSettings, nats_server: NatsServer, admin_token: str, js: JetStreamContext
) -> None:
    """The report consumer is shared by the replicas; whichever takes a heartbeat draws from
    the same bucket, so of ten heartbeats at 1/min exactly one counts across both."""
    replica = replicas(settings, nats_server, admin_token)
    async with replica() as (app_a, a), replica() as (app_b, _):
        await a.post("/api/agents", json={"name": "beater"})
        for _ in range(10):
            await js.publish(
                "agentcom.agent.beater.report", b'{"kind": "heartbeat", "agent_id": "beater"}'
            )

        async def all_dropped_but_one() -> None:
            assert dropped(app_a, "light") + dropped(app_b, "light") == 9

        await eventually(all_dropped_but_one)
        assert (await a.get("/api/agents/beater")).json()["state"] == "idle"  # the one counted


async def test_a_cut_off_counted_across_processes_holds_on_another_replica_and_a_restart(
    settings: CommonSettings, nats_server: NatsServer, admin_token: str, js: JetStreamContext
) -> None:
    replica = replicas(settings, nats_server, admin_token)
    async with replica() as (_, first):
        made = (await first.post("/api/agents", json={"name": "noisy"})).json()
        calm = (await first.post("/api/agents", json={"name": "calm"})).json()
        for _ in range(2):  # one short of the limit
            await js.publish("agentcom.agent.noisy.report", b'{"kind": "nonsense"}')
        await eventually(lambda: _handled(js))
        assert await _logs_in(nats_server, made)  # not cut off yet

    async with replica():  # a process that never saw the first two
        await js.publish("agentcom.agent.noisy.report", b'{"kind": "nonsense"}')
        await eventually(lambda: _handled(js))

        async def refused() -> None:
            assert not await _logs_in(nats_server, made)

        await eventually(refused)

    async with replica():  # restarted: the cut-off (5 min) still holds, for that agent only
        assert await _logs_in(nats_server, calm)
        assert not await _logs_in(nats_server, made)


async def test_a_hello_over_the_heavy_rate_is_dropped_and_one_refused_takes_no_token(
    settings: CommonSettings, nats_server: NatsServer, admin_token: str, js: JetStreamContext
) -> None:
    """A hello's token is taken in the transaction that applies it: one over the rate changes
    nothing, and one that fails (its agent is not registered yet) leaves the bucket as it was."""
    async with replicas(settings, nats_server, admin_token)() as (app, api):

        async def hello(supervisor: str) -> None:
            body = {"kind": "hello", "agent_id": "greeter", "supervisor": supervisor}
            await js.publish("agentcom.agent.greeter.report", json.dumps(body).encode())
            await eventually(lambda: _handled(js))

        await hello("none")  # before its registration: refused, no token taken
        await api.post("/api/agents", json={"name": "greeter"})
        await hello("pm2")  # the one token of the minute
        await hello("systemd")  # over the rate: dropped
        assert (await api.get("/api/agents/greeter")).json()["supervisor"] == "pm2"
        assert dropped(app, "heavy") == 1


async def _logs_in(server: NatsServer, made: dict[str, Any]) -> bool:
    """Whether the agent's own NATS login is accepted now (the scheduler answers logins)."""

    async def quiet(_exc: Exception) -> None:
        return None

    agent = Client()
    try:
        await agent.connect(
            server.address,
            user=made["nats_user"],
            password=made["nats_password"],
            allow_reconnect=False,
            max_reconnect_attempts=0,
            connect_timeout=10,  # past the server's auth timeout (see testing.nats_login_refused)
            error_cb=quiet,
        )
    except NatsError:
        return False
    finally:
        await agent.close()
    return True


async def _handled(js: JetStreamContext) -> None:
    info = await js.consumer_info("REPORTS", "scheduler-presence")
    assert (info.num_pending, info.num_ack_pending) == (0, 0)


async def test_buckets_are_unlogged_and_cut_offs_and_overrides_logged(
    settings: CommonSettings, nats_server: NatsServer, admin_token: str, engine: AsyncEngine
) -> None:
    """A take commits without waiting for a WAL flush only if its table is unlogged (migration
    0011); what a Postgres crash must not forgive stays logged."""
    # a replica's start runs the migrations
    async with replicas(settings, nats_server, admin_token)(), engine.connect() as conn:
        kinds = dict(
            (
                await conn.execute(
                    text(
                        "SELECT relname, CAST(relpersistence AS text) FROM pg_class c JOIN pg_namespace n"
                        " ON n.oid = c.relnamespace WHERE n.nspname = 'scheduler' AND"
                        " relname IN ('rate_buckets', 'rate_overrides', 'cutoffs')"
                    )
                )
            ).all()
        )
    assert kinds == {"rate_buckets": "u", "rate_overrides": "p", "cutoffs": "p"}
