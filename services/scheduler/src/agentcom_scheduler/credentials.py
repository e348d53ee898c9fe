"""Agents' NATS logins: the auth callout that admits them, their permissions, and kicking.

nats-server (config: `natsauth.ServerAuth.config()`) sends every login other than the hub
user's to `$SYS.REQ.USER.AUTH`. We check the agent's NATS password against its row and answer
with a user JWT allowing exactly what its sidecar needs: report on its own subject, read its
own INBOX consumer, and receive replies under its own prefix. A login for an unknown, removed,
rotated-away or cooled-down agent is refused. Changes therefore take effect at the next login
without touching nats-server; `kick` closes the connections an agent already has, on every
server of a NATS cluster.
"""

import asyncio
import contextlib
import hmac
import json
import logging
from typing import Any, Final

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import natsauth, subjects
from agentcom_scheduler import limits, store

log = logging.getLogger(__name__)

CONNZ_ALL: Final = "$SYS.REQ.SERVER.PING.CONNZ"
"""Asked of every server of the cluster; each answers for its own connections only."""
# How long `kick` waits for one more CONNZ reply after the last: nothing says how many servers
# will answer, so we stop when they fall silent. Servers of one cluster answer within a few ms
# of each other; 250 ms leaves room for a busy node while keeping `agent remove` quick.
CONNZ_QUIET: Final = 0.25
# The bound on the whole gathering, and on each CONNZ page and KICK request: a server silent
# that long is treated as gone (its connections went with it). Same as the old single request.
CONNZ_TIMEOUT: Final = 2.0
# Connections per CONNZ reply; nats-server's own default. More are fetched by `offset`.
CONNZ_PAGE: Final = 1024


def permissions(agent_id: str) -> dict[str, Any]:
    """The NATS permissions of one agent's user (publish / subscribe allow lists)."""
    consumer = subjects.agent_consumer(agent_id)
    inbox = subjects.agent_inbox(agent_id)
    stream = subjects.INBOX_STREAM
    return {
        "pub": {
            "allow": [
                subjects.agent_report(agent_id),
                f"$JS.API.CONSUMER.INFO.{stream}.{consumer}",
                f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}",
                f"$JS.ACK.{stream}.{consumer}.>",
                # create-if-missing only with its own name and its own inbox as the filter
                f"$JS.API.CONSUMER.CREATE.{stream}.{consumer}.{inbox}",
            ]
        },
        "sub": {
            "allow": [f"{subjects.agent_reply_prefix(agent_id)}.>", subjects.agent_all(agent_id)]
        },
    }


class Callout:
    """Answers nats-server's authorization requests for agents."""

    def __init__(
        self,
        engine: AsyncEngine,
        nc: Client,
        url: str,
        seed: str,
        limiter: limits.Limiter | None = None,
        *,
        connz_quiet: float = CONNZ_QUIET,
        connz_timeout: float = CONNZ_TIMEOUT,
        connz_page: int = CONNZ_PAGE,
    ) -> None:
        self.engine = engine
        self.nc = nc
        self.url = url
        self.seed = seed
        self.limiter = limiter
        self.connz_quiet = connz_quiet
        self.connz_timeout = connz_timeout
        self.connz_page = connz_page
        self._system: Client | None = None
        self._system_lock = asyncio.Lock()

    async def start(self) -> None:
        # a queue group: several scheduler replicas share the logins
        await self.nc.subscribe(natsauth.AUTH_SUBJECT, queue="scheduler-auth", cb=self._on_request)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks

    async def close(self) -> None:
        if self._system is not None:
            with contextlib.suppress(Exception):
                await self._system.close()

    async def _on_request(self, msg: Msg) -> None:
        try:
            request = natsauth.decode_claims(msg.data.decode())["nats"]
            user_nkey = str(request["user_nkey"])
            server_id = str(request["server_id"]["id"])
            opts = request.get("connect_opts", {})
            user, password = str(opts.get("user") or ""), str(opts.get("pass") or "")
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            log.warning("nats_login.malformed_request")
            return
        try:
            account, perms, error = await self._decide(user, password)
        except Exception:  # Postgres away: refuse now, the sidecar retries its login
            log.exception("nats_login.failed", extra={"agent_id": user})
            account, perms, error = None, None, "authorization service unavailable"
        claims: dict[str, Any] = {
            "sub": user_nkey,
            "aud": server_id,
            "nats": {"type": "authorization_response", "version": 2},
        }
        if error is None and account is not None and perms is not None:
            claims["nats"]["jwt"] = natsauth.encode_jwt(
                {
                    "sub": user_nkey,
                    "aud": account,
                    "name": user,
                    "nats": perms
                    | {"subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2},
                },
                self.seed,
            )
            log.info("nats_login.allowed", extra={"agent_id": user})
        else:
            claims["nats"]["error"] = error or "not allowed"
            log.warning("nats_login.refused", extra={"agent_id": user, "reason": error})
        await msg.respond(natsauth.encode_jwt(claims, self.seed).encode())

    async def _decide(
        self, user: str, password: str
    ) -> tuple[str | None, dict[str, Any] | None, str | None]:
        if user == natsauth.SYSTEM_USER:
            if hmac.compare_digest(password, natsauth.system_password(self.seed)):
                return natsauth.SYSTEM_ACCOUNT, {"pub": {}, "sub": {}}, None
            return None, None, "bad credentials"
        try:
            subjects.checked_id(user, "agent id")
        except ValueError:
            return None, None, "bad credentials"
        async with self.engine.connect() as conn:
            row = await store.fetch(conn, user)
        if row is None or row.nats_secret_hash is None:
            return None, None, "bad credentials"
        if not hmac.compare_digest(row.nats_secret_hash, natsauth.hash_secret(password)):
            return None, None, "bad credentials"
        left = 0.0
        if self.limiter is not None:
            left = (await self.limiter.blocked(self.engine, [user])).get(user, 0.0)
        if left > 0:
            return None, None, f"cooldown active: retry in {int(left) + 1}s"
        return natsauth.ACCOUNT, permissions(user), None

    async def kick(self, agent_id: str) -> int:
        """Close every NATS connection the agent has now (after remove, rotate or cooldown), on
        every server of a NATS cluster: each server reports its own connections to CONNZ and
        only kicks its own, so we gather every server's reply and kick on the one that reported
        the connection. Returns how many were closed.
        """
        system = await self._system_client()
        replies: asyncio.Queue[bytes] = asyncio.Queue()

        async def collect(msg: Msg) -> None:
            replies.put_nowait(msg.data)

        inbox = system.new_inbox()
        sub = await system.subscribe(inbox, cb=collect)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
        kicked = servers = 0
        try:
            await system.publish(CONNZ_ALL, self._connz_filter(agent_id, 0), reply=inbox)
            loop = asyncio.get_running_loop()
            stop_at = loop.time() + self.connz_timeout
            wait = self.connz_timeout  # for the first reply: at least our own server answers
            while (left := stop_at - loop.time()) > 0:
                try:
                    data = await asyncio.wait_for(replies.get(), timeout=min(wait, left))
                except TimeoutError:
                    break
                servers += 1
                kicked += await self.kick_on_server(system, agent_id, data)
                wait = self.connz_quiet
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if servers == 0:
            raise TimeoutError(f"no NATS server answered {CONNZ_ALL}")
        if kicked:
            log.warning(
                "nats_login.kicked",
                extra={"agent_id": agent_id, "connections": kicked, "servers": servers},
            )
        return kicked

    def _connz_filter(self, agent_id: str, offset: int) -> bytes:
        return json.dumps(
            {"user": agent_id, "acc": natsauth.ACCOUNT, "offset": offset, "limit": self.connz_page}
        ).encode()

    async def kick_on_server(self, system: Client, agent_id: str, connz: bytes) -> int:
        """Kick the agent's connections that one server's CONNZ reply `connz` lists, on that
        server, fetching further CONNZ pages first. Errors (the server's or a timeout) are
        logged naming agent, server and connection, and skipped. Returns how many were closed.
        """
        body = _api_reply(connz)
        about: dict[str, Any] = body.get("server") or {}
        server = str(about.get("id") or "")
        cids: list[int] = []
        while True:
            error = _api_error(body) if server else "reply names no server"
            if error:
                log.warning(
                    "nats_login.connz_failed",
                    extra={"agent_id": agent_id, "server": server, "error": error},
                )
                break
            data: dict[str, Any] = body.get("data") or {}
            listed: list[dict[str, Any]] = data.get("connections") or []
            page = [int(conn["cid"]) for conn in listed if "cid" in conn]
            cids.extend(page)
            # at most `limit` per reply, paged by `offset` over the filtered list; `total`
            # counts before the user filter (a bound, not the answer), so a short page ends it
            total = int(data.get("total") or 0)
            if len(page) < self.connz_page or len(cids) >= total:
                break
            try:
                reply = await system.request(
                    f"$SYS.REQ.SERVER.{server}.CONNZ",
                    self._connz_filter(agent_id, len(cids)),
                    timeout=self.connz_timeout,
                )
            except NatsError as exc:
                body = {"error": {"description": f"next CONNZ page: {exc!r}"}}
                continue
            body = _api_reply(reply.data)
        kicked = 0
        for cid in cids:
            try:
                reply = await system.request(
                    f"$SYS.REQ.SERVER.{server}.KICK",
                    json.dumps({"cid": cid}).encode(),
                    timeout=self.connz_timeout,
                )
                error = _api_error(_api_reply(reply.data))
            except NatsError as exc:
                error = repr(exc)
            if error:
                log.warning(
                    "nats_login.kick_error",
                    extra={"agent_id": agent_id, "server": server, "cid": cid, "error": error},
                )
            else:
                kicked += 1
        return kicked

    async def _system_client(self) -> Client:
        async with self._system_lock:
            if self._system is None or self._system.is_closed:
                self._system = await nats.connect(  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
                    servers=natsauth.login_of(self.url).servers,  # every node of a cluster
                    user=natsauth.SYSTEM_USER,
                    password=natsauth.system_password(self.seed),
                    name="agentcom-scheduler-system",
                )
            return self._system


def _api_reply(data: bytes) -> dict[str, Any]:
    """A `$SYS.REQ.SERVER.*` reply: `{"server": {...}, "data": {...}}` or `{"error": {...}}`."""
    try:
        body = json.loads(data)
    except ValueError:
        return {"error": {"description": "reply is not JSON"}}
    if not isinstance(body, dict):
        return {"error": {"description": "reply is not a JSON object"}}
    return body  # pyright: ignore[reportUnknownVariableType]  # JSON object


def _api_error(body: dict[str, Any]) -> str | None:
    error = body.get("error")
    if not error:
        return None
    if isinstance(error, dict):
        return str(error.get("description") or error)  # pyright: ignore[reportUnknownArgumentType, reportUnknownMemberType]  # JSON
    return str(error)
