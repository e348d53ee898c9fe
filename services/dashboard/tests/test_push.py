"""Web Push against a small real push service that checks VAPID and decrypts like a browser.

The push service here validates what a real one (FCM, Mozilla autopush) validates: the
`vapid t=<JWT>, k=<key>` header, an ES256 signature by that key, `aud` equal to its own
origin, a future `exp`, a `sub` contact; then it decrypts the `aes128gcm` body with the
subscription's private key and auth secret (the `http_ece` reference implementation, not ours).
"""

import base64
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import http_ece
import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from dashboard_stack import Stack, dead_letter, serve
from fastapi import FastAPI, Request, Response
from nats.aio.client import Client
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from agentcom_common import clock, subjects
from agentcom_common.contracts.hub import HubState, HubWatchdogFired
from agentcom_common.testing import eventually
from agentcom_dashboard import push


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class PushService:
    url: str
    browser_key: ec.EllipticCurvePrivateKey
    auth_secret: bytes
    received: list[dict[str, Any]] = field(default_factory=list[dict[str, Any]])
    refused: list[str] = field(default_factory=list[str])
    gone: bool = False

    def subscription(self) -> dict[str, Any]:
        public = self.browser_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": f"{self.url}/push/device-1",
            "expirationTime": None,
            "keys": {"p256dh": push.b64url(public), "auth": push.b64url(self.auth_secret)},
        }

    def check_vapid(self, header: str) -> None:
        scheme, _, params = header.partition(" ")
        assert scheme == "vapid", header
        fields = dict(part.strip().split("=", 1) for part in params.split(","))
        head, body, signature = fields["t"].split(".")
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64(fields["k"]))
        raw = unb64(signature)
        der = encode_dss_signature(int.from_bytes(raw[:32]), int.from_bytes(raw[32:]))
        key.verify(der, f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
        claims = json.loads(unb64(body))
        assert json.loads(unb64(head)) == {"typ": "JWT", "alg": "ES256"}
        assert claims["aud"] == self.url
        assert time.time() < claims["exp"] <= time.time() + 86400
        assert claims["sub"].startswith(("mailto:", "https:"))

    async def receive(self, request: Request) -> Response:
        if self.gone:
            return Response(status_code=410)
        try:
            assert request.headers["content-encoding"] == "aes128gcm"
            assert int(request.headers["ttl"]) > 0
            self.check_vapid(request.headers["authorization"])
            plain = http_ece.decrypt(  # pyright: ignore[reportUnknownMemberType]
                await request.body(),
                private_key=self.browser_key,
                auth_secret=self.auth_secret,
                version="aes128gcm",
            )
        except (AssertionError, KeyError, InvalidSignature, ValueError) as exc:
            self.refused.append(repr(exc))
            return Response(status_code=400)
        self.received.append(json.loads(plain) | {"urgency": request.headers.get("urgency")})
        return Response(status_code=201)


@pytest.fixture
async def push_service() -> AsyncIterator[PushService]:
    app = FastAPI()
    holder: list[PushService] = []

    @app.post("/push/{device}")
    async def receive(request: Request) -> Response:
        return await holder[0].receive(request)

    async with serve(app) as url:
        holder.append(PushService(url, ec.generate_private_key(ec.SECP256R1()), os.urandom(16)))
        yield holder[0]


async def subscribe(stack: Stack, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.dashboard, timeout=10) as client:
        await client.post("/login", data={"token": stack.viewer_token})
        csrf = (await client.get("/ui/snapshot")).json()["csrf"]
        return await client.post(
            "/ui/push/subscriptions", json=body, headers={"X-CSRF-Token": csrf}
        )


async def test_dead_letter_and_critical_alert_are_pushed_encrypted(
    stack: Stack, push_service: PushService, nc: Client
) -> None:
    assert (await subscribe(stack, push_service.subscription())).status_code == 201

    task = await dead_letter(stack, nc)
    async with stack.client() as http:
        await http.post(f"{stack.scheduler}/api/agents", json={"name": "offline-one"})

    async def both() -> None:
        titles = {m["title"] for m in push_service.received}
        assert {"Task dead-lettered", "CRITICAL: no_agents_online"} <= titles, (
            push_service.received,
            push_service.refused,
        )

    await eventually(both, timeout=20)
    assert push_service.refused == []
    by_title = {m["title"]: m for m in push_service.received}
    assert by_title["Task dead-lettered"]["body"] == f"task {task['id']}"
    assert by_title["CRITICAL: no_agents_online"]["urgency"] == "high"


async def test_the_hub_watchdog_is_pushed_as_critical(
    stack: Stack, push_service: PushService, js: JetStreamContext
) -> None:
    assert (await subscribe(stack, push_service.subscription())).status_code == 201
    at = clock.now()
    fired = HubWatchdogFired(
        watchdog="global",
        from_state=HubState.EXECUTING,
        state=HubState.RESTING,
        entered_at=at,
        deadline=at,
        at=at,
        message="the hub stayed executing past its 120 min watchdog; forced resting",
    )
    await js.publish(subjects.HUB_WATCHDOG_FIRED, fired.model_dump_json().encode())

    async def pushed() -> None:
        assert [m["title"] for m in push_service.received] == ["CRITICAL: hub watchdog"]

    await eventually(pushed, timeout=20)
    assert push_service.received[0]["body"] == fired.message
    assert push_service.received[0]["urgency"] == "high"


async def test_a_gone_subscription_is_dropped(
    stack: Stack, push_service: PushService, nc: Client, engine: AsyncEngine
) -> None:
    await subscribe(stack, push_service.subscription())
    push_service.gone = True
    await dead_letter(stack, nc)

    async def dropped() -> None:
        assert await push.subscription_count(engine) == 0

    await eventually(dropped, timeout=20)


async def test_a_bad_stored_key_does_not_stop_the_others(
    stack: Stack, push_service: PushService, nc: Client, engine: AsyncEngine
) -> None:
    # a row from before keys were checked at subscribe time: "A" * 87 is no P-256 point
    await stack.live.pusher.subscribe("https://push.invalid/old", "A" * 87, "A" * 22, "t")
    assert (await subscribe(stack, push_service.subscription())).status_code == 201
    await dead_letter(stack, nc)

    async def pushed() -> None:
        assert [m["title"] for m in push_service.received] == ["Task dead-lettered"]

    await eventually(pushed, timeout=20)
    assert stack.live.pusher.failed == 1
    assert await push.subscription_count(engine) == 2


async def test_vapid_keys_survive_a_restart(stack: Stack, engine: AsyncEngine) -> None:
    first = stack.live.pusher.vapid.public_key
    again = await push.load_or_create_vapid(engine)
    assert again.public_key == first


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"endpoint": "not a url"}, "endpoint"),
        ({"keys": {"p256dh": "short", "auth": "AAAAAAAAAAAAAAAAAAAAAA"}}, "keys.p256dh"),
        ({"keys": {"p256dh": "A" * 87, "auth": "AAAAAAAAAAAAAAAAAAAAAA"}}, "keys.p256dh"),
        ({"extra": 1}, "extra"),
    ],
)
async def test_bad_subscription_is_422_naming_the_field(
    stack: Stack, push_service: PushService, change: dict[str, Any], field: str
) -> None:
    response = await subscribe(stack, push_service.subscription() | change)
    assert response.status_code == 422
    assert response.json()["field"] == field


@pytest.fixture
def dashboard_extra(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {"dashboard_push_allow_http": "plain_http" not in request.node.name}


async def test_plain_http_endpoint_is_refused_by_default(
    stack: Stack, push_service: PushService
) -> None:
    response = await subscribe(stack, push_service.subscription())
    assert response.status_code == 422
    assert response.json()["field"] == "endpoint"
    assert "https" in response.json()["detail"]


async def test_subscribing_needs_a_login(stack: Stack, push_service: PushService) -> None:
    async with httpx.AsyncClient(base_url=stack.dashboard) as client:
        response = await client.post("/ui/push/subscriptions", json=push_service.subscription())
    assert response.status_code == 401


def test_encrypt_output_decrypts_with_the_reference_implementation() -> None:
    browser = ec.generate_private_key(ec.SECP256R1())
    secret = os.urandom(16)
    public = browser.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    sealed = push.encrypt(b"hello", push.b64url(public), push.b64url(secret))
    with contextlib.suppress(Exception):
        wrong = http_ece.decrypt(  # pyright: ignore[reportUnknownMemberType]
            sealed, private_key=browser, auth_secret=os.urandom(16), version="aes128gcm"
        )
        pytest.fail(f"decrypted with the wrong auth secret: {wrong!r}")
    plain = http_ece.decrypt(  # pyright: ignore[reportUnknownMemberType]
        sealed, private_key=browser, auth_secret=secret, version="aes128gcm"
    )
    assert plain == b"hello"
