"""Web Push: VAPID (RFC 8292) and message encryption (RFC 8291, `aes128gcm` of RFC 8188).

The cryptography is the maintained libraries' (py-vapid signs the VAPID JWT, pywebpush with
http-ece encrypts), not ours; the sending is ours, on the dashboard's async HTTP client
(pywebpush sends with requests or aiohttp, and we want one client, one timeout, our logs).

The VAPID key pair is made on first start and kept in `dashboard.vapid_keys`, so browsers that
subscribed keep working across restarts. Sent for CRITICAL alerts and dead-lettered tasks. A
push service that answers 404 or 410 has dropped the subscription; we drop it too.
"""

import base64
import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import py_vapid
import pywebpush
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_dashboard.tables import push_subscriptions, vapid_keys

log = logging.getLogger(__name__)
RECORD_SIZE = 4096


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _public_bytes(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


@dataclass(frozen=True, slots=True)
class Vapid:
    private: ec.EllipticCurvePrivateKey

    @property
    def public_key(self) -> str:
        """The applicationServerKey a browser subscribes with (base64url, uncompressed point)."""
        return b64url(_public_bytes(self.private.public_key()))

    def authorization(self, endpoint: str, subject: str, ttl: timedelta) -> str:
        """`vapid t=<ES256 JWT>,k=<public key>` for one push service origin."""
        parts = urlsplit(endpoint)
        claims = {
            "aud": f"{parts.scheme}://{parts.netloc}",
            "exp": int(time.time() + min(ttl.total_seconds(), 86400)),
            "sub": subject,
        }
        signer = py_vapid.Vapid02(private_key=self.private)
        headers: dict[str, str] = signer.sign(claims)  # pyright: ignore[reportUnknownMemberType]  # py-vapid: untyped
        return headers["Authorization"]


async def load_or_create_vapid(engine: AsyncEngine) -> Vapid:
    """The stored key pair; made and stored on first start (two starters: the first one wins)."""
    fresh = ec.generate_private_key(ec.SECP256R1())
    pem = fresh.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    async with engine.begin() as conn:
        await conn.execute(
            pg_insert(vapid_keys)
            .values(
                id="vapid", private_pem=pem, public_key=b64url(_public_bytes(fresh.public_key()))
            )
            .on_conflict_do_nothing(index_elements=[vapid_keys.c.id])
        )
        stored = (await conn.execute(select(vapid_keys.c.private_pem))).scalar_one()
    private = serialization.load_pem_private_key(stored.encode(), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    return Vapid(private)


def browser_key(p256dh: str) -> ec.EllipticCurvePublicKey:
    """The subscription's `p256dh` as a P-256 public key. Errors: ValueError (not one)."""
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(p256dh))
    except ValueError as exc:  # binascii.Error is one too
        raise ValueError("not a base64url P-256 public key (uncompressed point)") from exc


def encrypt(payload: bytes, p256dh: str, auth_secret: str) -> bytes:
    """RFC 8291 message encryption: one aes128gcm record with the header of RFC 8188."""
    browser_key(p256dh)  # a clear ValueError for a key that is not one, before the library's
    if len(payload) > RECORD_SIZE - 17 - 86:
        raise ValueError("push payload too large for one record")
    subscription = {"endpoint": "", "keys": {"p256dh": p256dh, "auth": auth_secret}}
    try:
        encoded = pywebpush.WebPusher(subscription).encode(payload, content_encoding="aes128gcm")
    except (ValueError, TypeError, pywebpush.WebPushException) as exc:
        raise ValueError(f"cannot encrypt for this subscription: {exc}") from exc
    body: object = encoded["body"]  # pyright: ignore[reportUnknownVariableType]  # pywebpush: a loosely typed dict
    if not isinstance(body, bytes):
        raise ValueError("the push library returned no body")
    return body


class Pusher:
    def __init__(
        self, engine: AsyncEngine, vapid: Vapid, subject: str, ttl: timedelta, timeout: float
    ) -> None:
        self.engine = engine
        self.vapid = vapid
        self.subject = subject
        self.ttl = ttl
        self._client = httpx.AsyncClient(timeout=timeout)
        self.sent = 0
        self.failed = 0

    async def close(self) -> None:
        await self._client.aclose()

    async def subscribe(self, endpoint: str, p256dh: str, auth: str, token_id: str) -> None:
        async with self.engine.begin() as conn:
            stmt = pg_insert(push_subscriptions).values(
                endpoint=endpoint, p256dh=p256dh, auth=auth, token_id=token_id
            )
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[push_subscriptions.c.endpoint],
                    set_={"p256dh": p256dh, "auth": auth, "token_id": token_id},
                )
            )

    async def unsubscribe(self, endpoint: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(push_subscriptions).where(push_subscriptions.c.endpoint == endpoint)
            )

    async def notify(self, message: dict[str, Any], *, urgent: bool) -> None:
        """Send `message` (JSON) to every subscription; failures are logged, never raised."""
        async with self.engine.connect() as conn:
            subs = (await conn.execute(select(push_subscriptions))).all()
        body = json.dumps(message).encode()
        for sub in subs:
            try:
                sealed = encrypt(body, sub.p256dh, sub.auth)
            except ValueError:  # a key stored before keys were checked: skip it, not the rest
                self.failed += 1
                log.warning("push.bad_key", extra={"host": urlsplit(str(sub.endpoint)).netloc})
                continue
            await self._send(sub.endpoint, sealed, urgent=urgent)

    async def _send(self, endpoint: str, body: bytes, *, urgent: bool) -> None:
        headers = {
            "Authorization": self.vapid.authorization(endpoint, self.subject, self.ttl),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "TTL": str(int(self.ttl.total_seconds())),
            "Urgency": "high" if urgent else "normal",
        }
        host = urlsplit(endpoint).netloc
        try:
            response = await self._client.post(endpoint, content=body, headers=headers)
        except httpx.HTTPError as exc:
            self.failed += 1
            log.warning("push.failed", extra={"host": host, "error": type(exc).__name__})
            return
        if response.status_code in (404, 410):
            await self.unsubscribe(endpoint)
            log.info("push.subscription_gone", extra={"host": host})
        elif response.status_code >= 400:
            self.failed += 1
            log.warning("push.refused", extra={"host": host, "status": response.status_code})
        else:
            self.sent += 1


async def subscription_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return len((await conn.execute(select(push_subscriptions.c.endpoint))).all())
