"""Bearer tokens: roles, hashing, verification with a short cache, revocation.

Tokens are random strings (`agc_` + 43 url-safe chars); only their SHA-256 is stored, so a
database dump leaks no usable token. A token's public id is the first 16 hex chars of that hash.
The `auth` schema is shared: every service verifies tokens, the scheduler's API issues them.

When a revoked token stops working (docs/architecture.md, "Security model", says the same):
- in the process that revoked it, at once (`Verifier.forget`);
- in every other service, when the `token_revoked` event reaches it. The event is an outbox
  row written in the revocation's own transaction, so it is published even if the revoking
  process dies right after the commit;
- a service that may have missed the event trusts no cached token: while its NATS connection
  is down, and for every token cached before its last reconnect, it asks Postgres again;
- and in any case within `auth_cache_ttl` (at most 60 s) of the revocation's commit, whatever
  happened to the event (a relay that cannot reach NATS, a slow consumer).
"""

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Final

from sqlalchemy import Column, DateTime, MetaData, String, Table, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agentcom_common import clock, migrations, outbox, subjects
from agentcom_common.contracts.auth import TokenRevoked
from agentcom_common.errors import ForbiddenError, NotFoundError, UnauthorizedError

SCHEMA: Final = "auth"
MIGRATIONS: Final = Path(__file__).parent / "auth_migrations"
PREFIX: Final = "agc_"

metadata = MetaData(schema=SCHEMA)
tokens = Table(
    "tokens",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("hash", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("name", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True)),
)


class Role(StrEnum):
    ADMIN = "admin"  # everything
    AGENT = "agent"  # its own work: reports, claims
    VIEWER = "viewer"  # read-only


@dataclass(frozen=True, slots=True)
class Principal:
    token_id: str
    role: Role
    name: str

    @property
    def agent_id(self) -> str | None:
        """The agent an agent token belongs to (the scheduler names it `agent <id>`), else None."""
        if self.role is not Role.AGENT or not self.name.startswith("agent "):
            return None
        return self.name.removeprefix("agent ")

    def require(self, *roles: Role) -> None:
        """Raise ForbiddenError unless this principal is admin or holds one of `roles`."""
        if self.role is not Role.ADMIN and self.role not in roles:
            allowed = ", ".join(sorted({Role.ADMIN, *roles}))
            raise ForbiddenError(f"this needs role {allowed}; the token has role {self.role}")


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token_id: str
    token: str  # shown once; never stored
    role: Role
    name: str


@dataclass(frozen=True, slots=True)
class TokenInfo:
    token_id: str
    role: Role
    name: str
    created_at: datetime
    revoked_at: datetime | None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_id(token: str) -> str:
    return digest(token)[:16]


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


async def migrate(engine: AsyncEngine) -> None:
    await migrations.upgrade(engine, MIGRATIONS, SCHEMA)


async def issue(engine: AsyncEngine, role: Role, name: str) -> IssuedToken:
    token = new_token()
    await store(engine, token, role, name)
    return IssuedToken(token_id(token), token, role, name)


async def store(engine: AsyncEngine, token: str, role: Role, name: str) -> None:
    """Record `token` (e.g. a seeded AGENTCOM_ADMIN_TOKEN). Idempotent on the token itself."""
    async with engine.begin() as conn:
        await store_in(conn, token, role, name)


async def store_in(conn: AsyncConnection, token: str, role: Role, name: str) -> None:
    """`store` inside the caller's transaction (an agent and its token commit together)."""
    if len(token) < 32:
        raise ValueError("a token must be at least 32 characters")
    await conn.execute(
        insert(tokens)
        .values(id=token_id(token), hash=digest(token), role=role.value, name=name)
        .on_conflict_do_nothing(index_elements=[tokens.c.hash])
    )


async def revoke(engine: AsyncEngine, token_id_: str, events: Table) -> TokenInfo:
    """Revoke by public id; the `token_revoked` event goes out through `events` (the calling
    service's outbox). Idempotent: revoking a revoked token returns it unchanged."""
    async with engine.begin() as conn:
        await revoke_in(conn, token_id_, events)
        row = (await conn.execute(select(tokens).where(tokens.c.id == token_id_))).one_or_none()
    if row is None:
        raise NotFoundError(f"no token with id {token_id_}", code="token_not_found")
    return TokenInfo(row.id, Role(row.role), row.name, row.created_at, row.revoked_at)


async def revoke_in(conn: AsyncConnection, token_id_: str, events: Table) -> None:
    """Revoke inside the caller's transaction (an agent's removal revokes its token with it).

    The `token_revoked` event is an outbox row of the same transaction: it commits, and is
    then published, exactly when the revocation does.
    """
    revoked_at = clock.now()
    done = await conn.execute(
        update(tokens)
        .where(tokens.c.id == token_id_, tokens.c.revoked_at.is_(None))
        .values(revoked_at=revoked_at)
    )
    if done.rowcount:
        event = TokenRevoked(token_id=token_id_, revoked_at=revoked_at)
        await outbox.add(conn, events, subjects.TOKEN_REVOKED, event)


async def list_tokens(engine: AsyncEngine) -> list[TokenInfo]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(tokens).order_by(tokens.c.created_at))).all()
    return [TokenInfo(r.id, Role(r.role), r.name, r.created_at, r.revoked_at) for r in rows]


async def lookup(engine: AsyncEngine, token: str) -> Principal | None:
    """The live principal behind `token`, or None if unknown or revoked."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(tokens.c.id, tokens.c.role, tokens.c.name).where(
                    tokens.c.hash == digest(token), tokens.c.revoked_at.is_(None)
                )
            )
        ).one_or_none()
    return None if row is None else Principal(row.id, Role(row.role), row.name)


Epoch = Callable[[], int | None]
"""Which connection the revocation events arrive on: None while it is down (events may be
missed), else a number that changes with every reconnect (events may have been missed between
two numbers). `messaging.connection_epoch` makes one from a NATS client."""


@dataclass(frozen=True, slots=True)
class _Cached:
    principal: Principal
    until: datetime
    epoch: int


class Verifier:
    """Turns an `Authorization` header into a Principal, caching hits for `ttl`, and only while
    the revocation events can reach this process (`epoch`, see the module notes)."""

    def __init__(self, engine: AsyncEngine, ttl: timedelta, epoch: Epoch) -> None:
        self.engine = engine
        self.ttl = ttl
        self._epoch = epoch
        self._cache: dict[str, _Cached] = {}

    async def verify(self, authorization: str | None) -> Principal:
        token = _bearer(authorization)
        key = digest(token)
        now = clock.now()
        epoch = self._epoch()
        cached = self._cache.get(key)
        if cached is not None and cached.until > now and cached.epoch == epoch:
            return cached.principal
        principal = await lookup(self.engine, token)
        if epoch is None:
            self._cache.clear()  # nothing cached before the drop may be trusted after it
        if principal is None:
            self._cache.pop(key, None)
            raise UnauthorizedError("unknown or revoked token", code="invalid_token")
        if epoch is not None:
            self._cache[key] = _Cached(principal, now + self.ttl, epoch)
        return principal

    def forget(self, token_id_: str) -> None:
        """Drop a revoked token from the cache at once (on the token_revoked event)."""
        for key, cached in list(self._cache.items()):
            if cached.principal.token_id == token_id_:
                del self._cache[key]


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise UnauthorizedError(
            "missing Authorization header; send `Authorization: Bearer <token>` "
            "(`agentcom token` prints the admin token)",
            code="missing_token",
        )
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthorizedError(
            "Authorization must be `Bearer <token>`",
            code="invalid_token",
            field="authorization",
        )
    return token.strip()
