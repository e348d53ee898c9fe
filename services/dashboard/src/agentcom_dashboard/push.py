"""Web Push: VAPID (RFC 8292) and message encryption (RFC 8291, `aes128gcm` of RFC 8188).

The VAPID key pair is made on first start and kept in `dashboard.vapid_keys`, so browsers that
subscribed keep working across restarts. Sent for CRITICAL alerts and dead-lettered tasks. A
push service that answers 404 or 410 has dropped the subscription; we drop it too.
"""

import base64
import hashlib
import hmac
import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
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
        """`vapid t=<ES256 JWT>, k=<public key>` for one push service origin."""
        parts = urlsplit(endpoint)
        claims = {
            "aud": f"{parts.scheme}://{parts.netloc}",
            "exp": int(time.time() + min(ttl.total_seconds(), 86400)),
            "sub": subject,
        }
        head = b64url(json.dumps({"typ": "JWT", "alg": "ES256"}).encode())
        body = b64url(json.dumps(claims).encode())
        signing_input = f"{head}.{body}".encode()
        r, s = decode_dss_signature(self.private.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
        return f"vapid t={head}.{body}.{signature}, k={self.public_key}"


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


def _hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()[:length]


def browser_key(p256dh: str) -> ec.EllipticCurvePublicKey:
    """The subscription's `p256dh` as a P-256 public key. Errors: ValueError (not one)."""
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(p256dh))
    except ValueError as exc:  # binascii.Error is one too
        raise ValueError("not a base64url P-256 public key (uncompressed point)") from exc


def encrypt(payload: bytes, p256dh: str, auth_secret: str) -> bytes:
    """RFC 8291 message encryption: one aes128gcm record with the header of RFC 8188."""
    ua_public = unb64url(p256dh)
    ua_key = browser_key(p256dh)
    as_private = ec.generate_private_key(ec.SECP256R1())
    as_public = _public_bytes(as_private.public_key())
    shared = as_private.exchange(ec.ECDH(), ua_key)
    ikm = _hkdf(unb64url(auth_secret), shared, b"WebPush: info\x00" + ua_public + as_public, 32)
    salt = os.urandom(16)
    cek = _hkdf(salt, ikm, b"Content-Encoding: aes128gcm\x00", 16)
    nonce = _hkdf(salt, ikm, b"Content-Encoding: nonce\x00", 12)
    if len(payload) > RECORD_SIZE - 17 - 86:
        raise ValueError("push payload too large for one record")
    sealed = AESGCM(cek).encrypt(nonce, payload + b"\x02", None)  # 0x02: the last record
    header = salt + RECORD_SIZE.to_bytes(4, "big") + bytes([len(as_public)]) + as_public
    return header + sealed


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
