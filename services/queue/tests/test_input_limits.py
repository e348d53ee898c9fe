"""Bad or oversized input at the queue's edges: a clear 4xx (or NATS error code), never a 500,
never a partial write; and no task it accepts is too large to move over NATS (issues 14, 15)."""

import asyncio
import contextlib
import json
from typing import Any

import httpx
import pytest
from nats.aio.client import Client
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common.testing import PgServer, eventually, free_port, running
from agentcom_queue.app import create_app
from agentcom_queue.settings import QueueSettings

Json = dict[str, Any]


async def post_raw(api: httpx.AsyncClient, body: bytes) -> httpx.Response:
    return await api.post("/api/tasks", content=body, headers={"content-type": "application/json"})


async def rpc_raw(nc: Client, op: str, body: bytes) -> tuple[str | None, str, Json | None]:
    """(error code, error text, reply body) of one queue RPC."""
    reply = await nc.request(f"agentcom.rpc.queue.{op}", body, timeout=10)
    headers = reply.headers or {}
    if code := headers.get("Nats-Service-Error-Code"):
        return code, headers.get("Nats-Service-Error", ""), None
    return None, "", json.loads(reply.data)


async def no_tasks(api: httpx.AsyncClient) -> None:
    page = await api.get("/api/tasks")
    assert page.status_code == 200
    assert page.json()["tasks"] == []


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
async def test_non_finite_numbers_are_refused_naming_the_field(
    api: httpx.AsyncClient, nc: Client, number: str
) -> None:
    body = f'{{"description": "x", "metadata": {{"score": {number}}}}}'.encode()

    reply = await post_raw(api, body)
    code, text, _ = await rpc_raw(nc, "submit", body)

    assert reply.status_code == 422, reply.text
    assert reply.json()["error"] == "invalid_field"
    assert reply.json()["field"] == "metadata.score"
    assert number in reply.json()["detail"]
    assert (code, text.split(":")[0]) == ("invalid_field", "metadata.score")
    await no_tasks(api)


async def test_a_nan_in_a_report_is_refused_over_nats_as_over_http(
    api: httpx.AsyncClient, nc: Client
) -> None:
    assert (await api.post("/api/tasks", json={"description": "x"})).status_code == 201
    _, _, claimed = await rpc_raw(nc, "claim", b'{"agent_id": "a1"}')
    assert claimed is not None
    task = claimed["task"]
    report = (
        f'{{"task_id": "{task["id"]}", "agent_id": "a1", "generation": {task["generation"]}, '
        '"outcome": "completed", "result": {"ratio": NaN}}'
    ).encode()

    code, text, _ = await rpc_raw(nc, "report", report)

    assert code == "invalid_field"
    assert text.startswith("result.ratio:")
    assert (await api.get(f"/api/tasks/{task['id']}")).json()["state"] == "assigned"


async def test_deep_nesting_is_refused_and_nothing_is_stored(
    api: httpx.AsyncClient, nc: Client
) -> None:
    deep = '{"a": ' * 900 + "1" + "}" * 900
    body = f'{{"description": "x", "metadata": {deep}}}'.encode()

    reply = await post_raw(api, body)
    code, text, _ = await rpc_raw(nc, "submit", body)

    assert reply.status_code == 422, reply.text
    assert reply.json()["field"] == "metadata"
    assert "nested deeper than 32 levels" in reply.json()["detail"]
    assert code == "invalid_field"
    assert "nested deeper" in text
    await no_tasks(api)


async def test_malformed_json_says_what_and_where(api: httpx.AsyncClient, nc: Client) -> None:
    body = b'{"description": "x",}'

    reply = await post_raw(api, body)
    code, text, _ = await rpc_raw(nc, "submit", body)

    assert reply.status_code == 422
    assert reply.json()["field"] == "body"
    assert reply.json()["detail"].startswith("invalid JSON at line 1 column 21: ")
    assert code == "invalid_field"
    assert text.startswith("invalid JSON at line 1 column 21: ")


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/tasks/task-%00", "path"),
        ("/api/tasks?cursor=99999999999999999999", "query.cursor"),
        ("/api/tasks?cursor=%C2%B3", "query.cursor"),
        ("/api/tasks?assigned_to=a%00b", "query.assigned_to"),
    ],
)
async def test_bad_paths_and_queries_are_a_422(
    api: httpx.AsyncClient, url: str, field: str
) -> None:
    reply = await api.get(url)

    assert reply.status_code == 422, reply.text
    assert reply.json()["field"] == field


@pytest.mark.parametrize("value", ['"3"', "true"])
async def test_numbers_are_not_coerced_from_strings_or_bools(
    api: httpx.AsyncClient, nc: Client, value: str
) -> None:
    body = f'{{"description": "x", "max_retries": {value}}}'.encode()

    reply = await post_raw(api, body)
    code, text, _ = await rpc_raw(nc, "submit", body)

    assert reply.status_code == 422, reply.text
    assert reply.json()["field"] == "max_retries"
    assert (code, text.split(":")[0]) == ("invalid_field", "max_retries")
    assert (await api.post("/api/tasks", json={"description": "x", "max_retries": 3})).is_success


@pytest.mark.parametrize("command", ["make test", [], ["make", 1], ["make", ""]])
async def test_a_command_that_is_not_an_argv_is_refused_at_submit(
    api: httpx.AsyncClient, command: object
) -> None:
    reply = await api.post(
        "/api/tasks", json={"description": "x", "metadata": {"command": command}}
    )

    assert reply.status_code == 422, reply.text
    assert reply.json()["field"] == "metadata"
    assert (
        "metadata.command must be a non-empty list of non-empty strings" in reply.json()["detail"]
    )
    await no_tasks(api)


async def test_a_body_over_the_limit_is_a_413_naming_it(api: httpx.AsyncClient) -> None:
    huge = {"description": "x", "metadata": {"blob": "x" * (20 * 1024 * 1024)}}

    reply = await api.post("/api/tasks", json=huge)

    assert reply.status_code == 413
    assert reply.json()["error"] == "body_too_large"
    assert "AGENTCOM_HTTP_MAX_BODY" in reply.json()["detail"]
    await no_tasks(api)


async def test_a_task_too_large_to_move_is_a_413_on_both_edges(
    api: httpx.AsyncClient, nc: Client
) -> None:
    # NATS's default max_payload is 1 MB, so the limit is a quarter of it whatever the setting
    body = {"description": "x", "metadata": {"blob": "x" * 300_000}}

    reply = await api.post("/api/tasks", json=body)
    code, text, _ = await rpc_raw(nc, "submit", json.dumps(body).encode())
    batch, _, _ = await rpc_raw(nc, "submit_batch", json.dumps({"tasks": [body]}).encode())

    assert reply.status_code == 413
    assert reply.json()["error"] == "task_too_large"
    assert "262144 bytes (AGENTCOM_QUEUE_MAX_TASK_BYTES)" in reply.json()["detail"]
    assert (code, batch) == ("task_too_large", "task_too_large")
    assert "AGENTCOM_QUEUE_MAX_TASK_BYTES" in text
    await no_tasks(api)


async def test_claims_and_pages_of_large_tasks_fit_the_reply_and_strand_nothing(
    api: httpx.AsyncClient, nc: Client
) -> None:
    # six tasks of 200 kB each: each fits, all together are over NATS's 1 MB max_payload
    for n in range(6):
        body = {"description": f"t{n}", "metadata": {"blob": "x" * 200_000}}
        assert (await api.post("/api/tasks", json=body)).status_code == 201

    _, _, listed = await rpc_raw(nc, "list", b'{"limit": 500}')
    seen: list[str] = []
    while listed is not None:
        seen += [t["id"] for t in listed["tasks"]]
        if not listed["next_cursor"]:
            break
        page = {"limit": 500, "cursor": listed["next_cursor"]}
        _, _, listed = await rpc_raw(nc, "list", json.dumps(page).encode())
    code, _, claimed = await rpc_raw(nc, "claim_batch", b'{"agent_id": "a1", "limit": 10}')

    assert len(set(seen)) == 6  # every task listed, over pages that each fit
    assert code is None
    assert claimed is not None
    got = {t["id"] for t in claimed["tasks"]}
    assert 1 <= len(got) < 6
    states = {t["id"]: t["state"] for t in (await api.get("/api/tasks")).json()["tasks"]}
    assert {i for i, s in states.items() if s == "assigned"} == got  # the rest went back
    assert {s for i, s in states.items() if i not in got} == {"queued"}


class PgProxy:
    """A TCP hop between the queue and Postgres that the test can take down and bring back:
    to the service it looks like a Postgres restart (sessions cut, connections refused)."""

    def __init__(self, pg: PgServer) -> None:
        self.pg = pg
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.links: set[asyncio.StreamWriter] = set()

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.pg.host.startswith("/"):
            return await asyncio.open_unix_connection(f"{self.pg.host}/.s.PGSQL.{self.pg.port}")
        return await asyncio.open_connection(self.pg.host, self.pg.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await self._open()
        self.links |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for link in self.links:
            link.close()
        self.links.clear()
        await self.server.wait_closed()

    def url(self, database: str) -> str:
        return f"postgresql://{self.pg.user}@127.0.0.1:{self.port}/{database}"


async def test_postgres_away_is_a_503_with_retry_after_then_it_works_again(
    queue_settings: QueueSettings, pg_server: PgServer, db_url: str, admin_token: str, nc: Client
) -> None:
    proxy = PgProxy(pg_server)
    await proxy.start()
    database = make_url(db_url).database or ""
    via_proxy = queue_settings.model_copy(update={"database_url": SecretStr(proxy.url(database))})
    async with running(create_app(via_proxy), "http://queue") as api:
        api.headers["Authorization"] = f"Bearer {admin_token}"
        assert (await api.post("/api/tasks", json={"description": "before"})).status_code == 201

        await proxy.stop()
        reply = await api.post("/api/tasks", json={"description": "during"})
        code, _, _ = await rpc_raw(nc, "submit", b'{"description": "during"}')

        assert reply.status_code == 503, reply.text
        assert reply.json()["error"] == "db_unavailable"
        assert reply.headers["Retry-After"] == "1"
        assert code == "db_unavailable"

        await proxy.start()

        async def works() -> None:
            assert (await api.post("/api/tasks", json={"description": "after"})).status_code == 201

        await eventually(works, timeout=10)
    await proxy.stop()


async def test_a_task_stored_before_the_limits_is_dead_lettered_not_offered_for_ever(
    api: httpx.AsyncClient, nc: Client, engine: AsyncEngine
) -> None:
    big = (await api.post("/api/tasks", json={"description": "big", "max_retries": 0})).json()
    small = (await api.post("/api/tasks", json={"description": "small"})).json()
    async with engine.begin() as conn:  # what a 1.5 MB task accepted by an older queue looks like
        await conn.execute(
            text(
                "UPDATE queue.tasks SET metadata = jsonb_build_object('blob', repeat('x', 1500000))"
                " WHERE id = :id"
            ),
            {"id": big["id"]},
        )

    _, _, listed = await rpc_raw(nc, "list", b'{"limit": 500}')
    seen: list[str] = []
    while listed is not None:  # the page walk steps over it instead of stalling
        seen += [t["id"] for t in listed["tasks"]]
        if not listed["next_cursor"]:
            break
        page = {"limit": 500, "cursor": listed["next_cursor"]}
        _, _, listed = await rpc_raw(nc, "list", json.dumps(page).encode())
    code, _, first = await rpc_raw(nc, "claim", b'{"agent_id": "a1"}')
    _, _, second = await rpc_raw(nc, "claim", b'{"agent_id": "a1"}')

    assert seen == [small["id"]]
    assert code is None
    assert first == {"schema_version": 1, "task": None}
    assert second is not None
    assert second["task"]["id"] == small["id"]
    dead = (await api.get(f"/api/tasks/{big['id']}")).json()
    assert dead["state"] == "dead_letter"
    assert "cannot be delivered" in dead["last_error"]


async def test_a_date_time_is_not_read_from_a_number(api: httpx.AsyncClient) -> None:
    """Lax parsing took `"complete_by": 0` for 1970-01-01: a deadline nobody wrote."""
    reply = await api.post("/api/tasks", json={"description": "x", "complete_by": 0})

    assert reply.status_code == 422
    assert reply.json()["field"] == "complete_by"
    assert "ISO 8601" in reply.json()["detail"]
