"""Server-side login sessions: log in with a bearer token, act with it through the owning service.

The cookie carries a random secret. The row is keyed by the secret's SHA-256 and holds the
user's token sealed (AES-GCM) under a key derived from the secret, so neither the cookie alone
(no token in it) nor the table alone (no key in it) gives the token away. Every state-changing
request must also send the session's CSRF token in `X-CSRF-Token`; the cookie is
`SameSite=Strict` and `HttpOnly`.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import auth, clock
from agentcom_common.errors import ForbiddenError, UnauthorizedError
from agentcom_dashboard.tables import sessions

COOKIE = "agentcom_session"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True, slots=True)
class Session:
    token_id: str
    role: auth.Role
    name: str
    token: str  # the user's bearer token, for calls to the owning service; never logged
    csrf: str

    @property
    def is_admin(self) -> bool:
        return self.role is auth.Role.ADMIN

    def require_admin(self, csrf: str | None) -> None:
        """Refuse unless this is an admin session and `csrf` is its CSRF token."""
        if not self.is_admin:
            raise ForbiddenError(
                f"this action needs an admin login; you are logged in as {self.role}",
                code="admin_required",
            )
        if csrf is None or not hmac.compare_digest(csrf, self.csrf):
            raise ForbiddenError(
                "missing or wrong X-CSRF-Token header; reload the page", code="csrf_failed"
            )


def _key(secret: str) -> bytes:
    return HKDF(hashes.SHA256(), 16, salt=None, info=b"agentcom-dashboard-session").derive(
        secret.encode()
    )


def _row_id(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def login(engine: AsyncEngine, token: str, ttl: timedelta) -> str:
    """Check `token` and open a session; returns the cookie secret.

    Errors: 401 `invalid_token` (unknown or revoked), 403 `forbidden` (an agent token).
    """
    principal = await auth.lookup(engine, token.strip())
    if principal is None:
        raise UnauthorizedError("unknown or revoked token", code="invalid_token", field="token")
    if principal.role is auth.Role.AGENT:
        raise ForbiddenError("agent tokens cannot log in to the dashboard", field="token")
    secret = secrets.token_urlsafe(32)
    nonce = secrets.token_bytes(12)
    sealed = nonce + AESGCM(_key(secret)).encrypt(nonce, token.strip().encode(), None)
    async with engine.begin() as conn:
        await conn.execute(delete(sessions).where(sessions.c.expires_at < clock.now()))
        await conn.execute(
            insert(sessions).values(
                id=_row_id(secret),
                token_id=principal.token_id,
                role=principal.role.value,
                name=principal.name,
                sealed_token=sealed,
                csrf=secrets.token_urlsafe(24),
                expires_at=clock.now() + ttl,
            )
        )
    return secret


async def load(engine: AsyncEngine, secret: str | None) -> Session | None:
    """The live session behind a cookie, or None (no cookie, expired, unknown, token revoked)."""
    if not secret or len(secret) > 100:
        return None
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(sessions).where(
                    sessions.c.id == _row_id(secret), sessions.c.expires_at > clock.now()
                )
            )
        ).one_or_none()
    if row is None:
        return None
    sealed = bytes(row.sealed_token)
    token = AESGCM(_key(secret)).decrypt(sealed[:12], sealed[12:], None).decode()
    if await auth.lookup(engine, token) is None:  # revoked since login: the session ends too
        await logout(engine, secret)
        return None
    return Session(row.token_id, auth.Role(row.role), row.name, token, row.csrf)


async def logout(engine: AsyncEngine, secret: str | None) -> None:
    if secret:
        async with engine.begin() as conn:
            await conn.execute(delete(sessions).where(sessions.c.id == _row_id(secret)))
