"""The sidecar's NATS link: its own credentials, reconnect forever, and the report courier.

`connect` retries the first connection with capped exponential backoff and jitter; after that
nats-py reconnects forever. The connection uses the agent's reply-inbox prefix so the agent's
NATS user may subscribe only to its own replies. The `Courier` sends journaled reports in order
with `Nats-Msg-Id = <agent>-<seq>` and marks each sent only once JetStream acked it.
"""

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable

import nats
import stamina
from nats.aio.client import Client
from nats.errors import Error as NatsError, NoServersError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import NotFoundError as StreamNotFoundError

from agentcom_common import subjects
from agentcom_common.messaging import MSG_ID
from agentcom_sidecar import console
from agentcom_sidecar.config import SidecarConfig
from agentcom_sidecar.journal import TERMINAL_KINDS, Journal

log = logging.getLogger(__name__)


def fault(config: SidecarConfig, point: str) -> None:
    """Testing only: SIGKILL this process at `point`, once per state dir (a real crash)."""
    if config.fault_kill_at != point:
        return
    marker = config.state / f"fault-{point}.fired"
    if marker.exists():
        return
    marker.touch()
    os.kill(os.getpid(), signal.SIGKILL)


async def connect(config: SidecarConfig, on_reconnect: Callable[[], Awaitable[None]]) -> Client:
    """Connect with the agent's own credentials; retry forever with backoff and jitter."""

    async def on_error(exc: Exception) -> None:
        # nats-py calls this for every failed reconnect (each `reconnect_wait`): report the
        # 1st, 2nd, 4th… so an hour away is a dozen lines, not thousands
        if errors.failed():
            log.warning(
                "nats.error",
                extra={"error": type(exc).__name__, "times": errors.count},
            )
            if errors.count > 1:
                console.say(
                    f"still reconnecting to {config.nats_url} "
                    f"({errors.seconds():.0f} s, {errors.count} tries)"
                )

    async def on_disconnect() -> None:
        log.warning("nats.disconnected")
        console.say(f"lost the connection to {config.nats_url}; reconnecting")

    async def on_reconnected() -> None:
        lasted = errors.reset()
        console.say(f"reconnected to {config.nats_url} after {lasted:.0f} s")
        await on_reconnect()

    errors = console.Repeats()

    # stamina: capped exponential backoff with jitter, forever (it logs each retry it schedules)
    async for attempt in stamina.retry_context(
        on=(NoServersError, OSError, TimeoutError, NatsError),
        attempts=None,
        timeout=None,
        wait_initial=config.reconnect_wait,
        wait_max=config.reconnect_wait_max,
        wait_jitter=config.reconnect_wait,
    ):
        with attempt:
            try:
                async with asyncio.timeout(max(1.0, config.reconnect_wait_max)):
                    client = await nats.connect(  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed callbacks
                        servers=[config.nats_url],
                        name=f"sidecar-{config.agent_id}",
                        user=config.nats_user,
                        password=config.nats_password.get_secret_value()
                        if config.nats_password
                        else None,
                        inbox_prefix=subjects.agent_reply_prefix(config.agent_id),
                        reconnect_time_wait=config.reconnect_wait,
                        max_reconnect_attempts=-1,
                        connect_timeout=max(1, round(config.reconnect_wait_max)),
                        error_cb=on_error,
                        disconnected_cb=on_disconnect,
                        reconnected_cb=on_reconnected,
                    )
            except (NoServersError, OSError, TimeoutError, NatsError) as exc:
                if errors.failed():
                    console.say(f"cannot reach {config.nats_url} ({type(exc).__name__}); retrying")
                raise
            # inside `with attempt`: a failed try never gets here (stamina retries it)
            errors.reset()  # the failures before the first connection are not a reconnect's
            return client
    raise AssertionError("unreachable: the connection is retried forever")


async def bind_inbox(
    js: JetStreamContext, config: SidecarConfig
) -> JetStreamContext.PullSubscription:
    """Bind the durable inbox consumer the scheduler made; create it only if it is missing."""
    durable = subjects.agent_consumer(config.agent_id)
    try:
        await js.consumer_info(subjects.INBOX_STREAM, durable)
    except StreamNotFoundError:
        await js.add_consumer(  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed
            subjects.INBOX_STREAM,
            ConsumerConfig(
                durable_name=durable,
                filter_subject=subjects.agent_inbox(config.agent_id),
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=config.inbox_ack_wait,
                max_ack_pending=16,
            ),
        )
    return await js.pull_subscribe_bind(durable=durable, stream=subjects.INBOX_STREAM)


class Courier:
    """Delivers the journal's unsent reports, in order, until each is acked."""

    def __init__(self, journal: Journal, config: SidecarConfig) -> None:
        self.journal, self.config = journal, config
        self.wake = asyncio.Event()
        self.idle = asyncio.Event()

    async def run(self, js: JetStreamContext) -> None:
        subject = subjects.agent_report(self.config.agent_id)
        backoff = self.config.reconnect_wait
        while True:
            rows = self.journal.unsent()
            if not rows:
                self.idle.set()
                self.wake.clear()
                try:
                    async with asyncio.timeout(1.0):
                        await self.wake.wait()
                except TimeoutError:
                    pass
                continue
            self.idle.clear()
            try:
                for row in rows:
                    if row.kind in TERMINAL_KINDS:
                        fault(self.config, "before_report_publish")
                    msg_id = f"{self.config.agent_id}-{row.seq}"
                    await js.publish(subject, row.payload, headers={MSG_ID: msg_id}, timeout=5)
                    if row.kind in TERMINAL_KINDS:
                        fault(self.config, "after_report_publish")
                    self.journal.mark_sent(row.seq)
                backoff = self.config.reconnect_wait
            except (NatsError, OSError, TimeoutError) as exc:  # not connected: the row stays unsent
                log.warning("report.send_failed", extra={"error": type(exc).__name__})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.config.reconnect_wait_max)

    async def flushed(self, timeout: float) -> bool:
        """Wait until every journaled report was acked (for a clean restart)."""
        self.wake.set()
        try:
            async with asyncio.timeout(timeout):
                while self.journal.unsent():
                    self.idle.clear()
                    self.wake.set()
                    await self.idle.wait()
        except TimeoutError:
            return False
        return True
