"""NATS: connecting with reconnect, the JetStream streams, and publishing with trace headers.

`traceparent` goes into message headers here and nowhere else, so one task is one trace across
services without any call site thinking about it.
"""

import asyncio
import logging
from collections.abc import Callable
from typing import Final

import nats
from nats.aio.client import Client
from nats.errors import NoServersError
from nats.js import JetStreamContext
from nats.js.api import PubAck, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

from agentcom_common import natsauth, subjects, telemetry
from agentcom_common.contracts import Contract
from agentcom_common.errors import UnavailableError
from agentcom_common.settings import CommonSettings

log = logging.getLogger(__name__)

MSG_ID: Final = "Nats-Msg-Id"
_STREAM_IN_USE: Final = 10058  # JetStream: stream name already in use with a different config


async def connect(settings: CommonSettings, name: str, *, deadline: float = 30.0) -> Client:
    """Connect to `settings.nats_url` (one server, or a cluster's nodes comma-separated),
    retrying until `deadline` seconds have passed.

    Once connected the client reconnects forever: a NATS restart pauses a service, never kills it.
    """
    if not settings.nats_url:
        raise UnavailableError(
            "AGENTCOM_NATS_URL is not set; run the stack with `agentcom up` or set the variable",
            code="nats_unavailable",
        )
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + deadline
    while True:
        try:
            # nats-py may keep retrying an unreachable server inside connect(); bound it
            async with asyncio.timeout(max(0.1, stop_at - loop.time())):
                return await _connect_once(settings, name)
        except (NoServersError, OSError, TimeoutError) as exc:
            if loop.time() >= stop_at:
                raise UnavailableError(
                    f"cannot reach NATS at {natsauth.redact(settings.nats_url)}: {type(exc).__name__}; "
                    "is the server running? (`agentcom status`)",
                    code="nats_unavailable",
                ) from exc
            await asyncio.sleep(settings.nats_reconnect_wait.total_seconds())


async def connect_once(url: str, timeout: float) -> Client:
    """One bounded attempt, no reconnects, no error output: for probes and CLI checks."""

    async def quiet(_exc: Exception) -> None:
        return None

    async with asyncio.timeout(timeout):
        return await nats.connect(  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
            url,
            connect_timeout=max(1, round(timeout)),
            allow_reconnect=False,
            max_reconnect_attempts=0,
            error_cb=quiet,
        )


async def _connect_once(settings: CommonSettings, name: str) -> Client:
    async def on_error(exc: Exception) -> None:
        log.warning("nats.error", extra={"error": type(exc).__name__})

    async def on_disconnect() -> None:
        log.warning("nats.disconnected")

    async def on_reconnect() -> None:
        log.info("nats.reconnected")

    login = natsauth.login_of(settings.nats_url or "")
    return await nats.connect(  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
        servers=login.servers,
        # a user without a password is a token, as nats-py reads one in a URL
        user=login.user if login.password is not None else None,
        password=login.password,
        token=login.user if login.password is None else None,
        name=name,
        connect_timeout=max(1, int(settings.nats_connect_timeout.total_seconds())),
        reconnect_time_wait=max(0.01, settings.nats_reconnect_wait.total_seconds()),
        max_reconnect_attempts=-1,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    )


def connection_epoch(nc: Client) -> Callable[[], int | None]:
    """None while `nc` is disconnected, else how often it has reconnected (`auth.Epoch`).

    Core NATS delivers nothing to a client that is away, so state kept up to date by messages
    (the token cache) must not be trusted across a change of this value.
    """

    def epoch() -> int | None:
        reconnects: int = nc.stats["reconnects"]
        return reconnects if nc.is_connected else None

    return epoch


async def ping(nc: Client, timeout: float) -> None:
    """Round trip to the server; raises while disconnected.

    nats-py's `flush()` alone succeeds during a reconnect (it flushes to a buffer), which would
    report a dead server as healthy.
    """
    if not nc.is_connected:
        raise ConnectionError(
            f"NATS connection is {'reconnecting' if nc.is_reconnecting else 'down'}"
        )
    await nc.flush(timeout=max(1, round(timeout)))


def stream_configs(settings: CommonSettings) -> list[StreamConfig]:
    """EVENTS fans out to every reader; INBOX is a work queue (acked = done); REPORTS fans out."""
    dedup = settings.dedup_window.total_seconds()
    age = settings.events_max_age.total_seconds()
    replicas = settings.nats_stream_replicas
    return [
        StreamConfig(
            name=subjects.EVENTS_STREAM,
            subjects=list(subjects.STREAM_SUBJECTS[subjects.EVENTS_STREAM]),
            storage=StorageType.FILE,
            max_age=age,
            duplicate_window=dedup,
            num_replicas=replicas,
        ),
        StreamConfig(
            name=subjects.INBOX_STREAM,
            subjects=list(subjects.STREAM_SUBJECTS[subjects.INBOX_STREAM]),
            storage=StorageType.FILE,
            retention=RetentionPolicy.WORK_QUEUE,
            duplicate_window=dedup,
            num_replicas=replicas,
        ),
        StreamConfig(
            name=subjects.REPORTS_STREAM,
            subjects=list(subjects.STREAM_SUBJECTS[subjects.REPORTS_STREAM]),
            storage=StorageType.FILE,
            max_age=age,
            duplicate_window=dedup,
            num_replicas=replicas,
        ),
    ]


async def ensure_streams(js: JetStreamContext, settings: CommonSettings) -> None:
    """Create the streams, or bring an existing one's config up to date. Safe to run concurrently."""
    for config in stream_configs(settings):
        try:
            await js.add_stream(config)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
        except BadRequestError as exc:
            if exc.err_code != _STREAM_IN_USE:
                raise
            await js.update_stream(config)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks


async def publish(
    js: JetStreamContext,
    subject: str,
    message: Contract,
    *,
    msg_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> PubAck:
    """Publish `message` to JetStream and wait for the stream's ack.

    `msg_id` becomes `Nats-Msg-Id`: a retry with the same id inside the duplicate window is
    stored once. Trace context is taken from `headers` if given, else from the current span.
    """
    return await publish_raw(
        js, subject, message.model_dump_json().encode(), msg_id=msg_id, headers=headers
    )


async def publish_raw(
    js: JetStreamContext,
    subject: str,
    payload: bytes,
    *,
    msg_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> PubAck:
    """`publish` for a payload that is already JSON (the outbox stores it that way)."""
    sent = dict(headers) if headers else telemetry.inject_headers()
    if msg_id is not None:
        sent[MSG_ID] = msg_id
    return await js.publish(subject, payload, headers=sent)
