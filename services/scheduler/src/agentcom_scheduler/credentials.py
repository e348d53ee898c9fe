"""Agents' NATS logins: the auth callout that admits them, their permissions, and kicking.

nats-server (config: `natsauth.ServerAuth.config()`) sends every login other than the hub
user's to `$SYS.REQ.USER.AUTH`. We check the agent's NATS password against its row and answer
with a user JWT allowing exactly what its sidecar needs: report on its own subject, read its
own INBOX consumer, and receive replies under its own prefix. A login for an unknown, removed,
rotated-away or cooled-down agent is refused. Changes therefore take effect at the next login
without touching nats-server; `kick` closes the connections an agent already has.
"""

import asyncio
import contextlib
import hmac
import json
import logging
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import natsauth, subjects
from agentcom_scheduler import limits, store

log = logging.getLogger(__name__)


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
    ) -> None:
        self.engine = engine
        self.nc = nc
        self.url = url
        self.seed = seed
        self.limiter = limiter
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
        if self.limiter is not None and (left := self.limiter.blocked(user)) > 0:
            return None, None, f"cooldown active: retry in {int(left) + 1}s"
        return natsauth.ACCOUNT, permissions(user), None

    async def kick(self, agent_id: str) -> int:
        """Close every NATS connection the agent has now (after remove, rotate or cooldown)."""
        system = await self._system_client()
        reply = await system.request(
            "$SYS.REQ.SERVER.PING.CONNZ",
            json.dumps({"user": agent_id, "acc": natsauth.ACCOUNT}).encode(),
            timeout=2,
        )
        body: dict[str, Any] = json.loads(reply.data)
        server = str(body["server"]["id"])
        connections: list[dict[str, Any]] = body.get("data", {}).get("connections") or []
        kicked = 0
        for conn in connections:
            await system.request(
                f"$SYS.REQ.SERVER.{server}.KICK",
                json.dumps({"cid": conn["cid"]}).encode(),
                timeout=2,
            )
            kicked += 1
        if kicked:
            log.warning("nats_login.kicked", extra={"agent_id": agent_id, "connections": kicked})
        return kicked

    async def _system_client(self) -> Client:
        async with self._system_lock:
            if self._system is None or self._system.is_closed:
                self._system = await nats.connect(  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
                    natsauth.with_credentials(
                        self.url, natsauth.SYSTEM_USER, natsauth.system_password(self.seed)
                    ),
                    name="agentcom-scheduler-system",
                )
            return self._system
