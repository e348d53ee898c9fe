"""What becomes of a JetStream message once its handler ran: the ack/nak/term policy that
every durable pull consumer of ours follows.

| handler                                                   | message | recorded             |
|-----------------------------------------------------------|---------|----------------------|
| returned                                                  | ack     |                      |
| input error (`InvalidError`, any `ValueError` such as a   | term    | event, violation     |
| pydantic or JSON error, `TypeError`, `RecursionError`,    |         |                      |
| a Postgres data exception)                                |         |                      |
| refused by an owner (`NotFoundError`, `ConflictError`...) | term    | event                |
| anything else (`UnavailableError`, Postgres or NATS away) | nak     | after `max_deliver`: |
|                                                           | backoff | term + event         |

A message that can never be processed is thus refused once, on its first delivery, instead of
being redelivered forever and holding a place among the consumer's unacked messages (one
agent's 1,100 poisoned reports used to stop the scheduler reading anybody's). A transient
failure is retried with a growing delay, and not forever: at `max_deliver` deliveries it is
refused too. The record is the event `agentcom.evt.system.message_refused` (`MessageRefused`),
published before the term (a record that cannot be written leaves the message for redelivery);
a violation is also handed to the consumer's `on_violation`, which the scheduler counts toward
cutting the agent off.
"""

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import nats.errors
import nats.js.errors
import stamina
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry.trace import SpanKind
from sqlalchemy.exc import DataError

from agentcom_common import clock, messaging, subjects, telemetry
from agentcom_common.contracts.system import MessageRefused
from agentcom_common.errors import (
    AgentcomError,
    InvalidError,
    TooManyRequestsError,
    UnavailableError,
)
from agentcom_common.settings import CommonSettings

log = logging.getLogger(__name__)

Verdict = Literal["acked", "refused", "declined", "retried", "gave_up"]
Judgement = Literal["refuse", "decline", "retry"]
Subjects = str | tuple[str, ...]
"""A durable's filter: one subject, or several (NATS 2.10's `filter_subjects`)."""

INPUT_ERRORS: tuple[type[BaseException], ...] = (
    InvalidError,
    ValueError,  # pydantic's ValidationError, json's JSONDecodeError, UnicodeError
    TypeError,
    RecursionError,  # a JSON document nested too deep to parse
    DataError,  # Postgres refused a value (SQLSTATE class 22)
)
"""Failures that the same message will meet again on every delivery."""


def judge(exc: BaseException) -> Judgement:
    """`refuse` an input error, `decline` what an owner refused for good, else `retry`."""
    if isinstance(exc, INPUT_ERRORS):
        return "refuse"
    if isinstance(exc, AgentcomError) and not isinstance(
        exc, UnavailableError | TooManyRequestsError
    ):
        return "decline"
    return "retry"


def describe(exc: BaseException) -> tuple[str, str]:
    """The code and detail that go into the record (never a traceback or a repr)."""
    if isinstance(exc, AgentcomError):
        return exc.code, exc.detail[:500]
    if isinstance(exc, RecursionError):
        return "too_deep", "the message is nested too deep to read"
    return "unprocessable", f"{type(exc).__name__}: {str(exc)[:300]}"


@dataclass(frozen=True, slots=True)
class Policy:
    """Redelivery of transient failures: `retry_first` seconds after the first failed delivery,
    doubling up to `retry_max`, refused at delivery `max_deliver`."""

    max_deliver: int = 50
    retry_first: float = 1.0
    retry_max: float = 60.0
    max_ack_pending: int = 10_000

    @classmethod
    def of(cls, settings: CommonSettings) -> "Policy":
        return cls(
            max_deliver=settings.consumer_max_deliver,
            retry_first=settings.consumer_retry_first.total_seconds(),
            retry_max=settings.consumer_retry_max.total_seconds(),
        )

    def delay(self, deliveries: int) -> float:
        return min(self.retry_max, self.retry_first * 2 ** max(0, deliveries - 1))

    def config(self, durable: str, subject: Subjects, *, new_only: bool = False) -> ConsumerConfig:
        """The durable's config; the server's own `max_deliver` is the backstop for messages
        that were never answered (a process killed mid-handler) and so never reached ours.

        `subject` is one filter or several; `new_only` starts a new durable at the messages
        stored after it was made (an existing one keeps its place either way)."""
        several = not isinstance(subject, str)
        return ConsumerConfig(
            name=durable,
            durable_name=durable,
            filter_subject=None if several else subject,
            filter_subjects=list(subject) if several else None,
            deliver_policy=DeliverPolicy.NEW if new_only else DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            max_deliver=self.max_deliver + 1,  # our refusal at max_deliver comes first
            max_ack_pending=self.max_ack_pending,
        )


async def subscribe(
    js: JetStreamContext,
    stream: str,
    subject: Subjects,
    durable: str,
    policy: Policy,
    *,
    new_only: bool = False,
) -> JetStreamContext.PullSubscription:
    """Create the durable, or bring an existing one to `policy` (a durable made before had no
    bound on deliveries), and bind a pull subscription to it.

    Tried again until it works when NATS does not answer (reconnecting, the JetStream API
    timing out on a busy host, no meta leader yet on a cluster): a consumer loop that ended on
    its first request read nothing for the life of the process (a CI run's scheduler never
    read a report again). A refusal of the config itself is raised at once."""
    config = policy.config(durable, subject, new_only=new_only)
    async for attempt in stamina.retry_context(
        on=_UNANSWERED, attempts=None, timeout=None, wait_initial=0.2, wait_max=5.0
    ):
        with attempt:
            try:
                await js.add_consumer(stream, config=config)  # pyright: ignore[reportUnknownMemberType]  # nats-py: loosely typed **params; create or update
                return await js.pull_subscribe_bind(durable=durable, stream=stream)
            except _UNANSWERED as exc:
                log.warning(
                    "consumer.subscribe_failed",
                    extra={"consumer": durable, "error": type(exc).__name__},
                )
                raise
    raise AssertionError("unreachable: stamina retries without an end")


_UNANSWERED: tuple[type[Exception], ...] = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.js.errors.ServiceUnavailableError,
    OSError,
)
"""What NATS answers (or fails to) while it is away or busy: worth asking again."""


async def consume(
    js: JetStreamContext,
    stream: str,
    subject: Subjects,
    durable: str,
    policy: Policy,
    handle: Callable[[Msg], Awaitable[object]],
    *,
    batch: int = 256,
    new_only: bool = False,
) -> None:
    """Read the durable `durable` for ever, settling each message by `policy` after `handle`
    ran (`Settler.run`); a failed fetch (NATS reconnecting) is logged and tried again a second
    later, the unacked messages staying stored. The subscription is dropped on the way out,
    or it would hold `nc.drain()` at stop until that times out."""
    settler = Settler(js, durable, policy)
    sub = await subscribe(js, stream, subject, durable, policy, new_only=new_only)
    try:
        while True:
            try:
                found = await sub.fetch(batch, timeout=1)
            except TimeoutError:
                continue
            except Exception:
                log.exception("consumer.fetch_failed", extra={"consumer": durable})
                await asyncio.sleep(1)
                continue
            for msg in found:
                await settler.run(msg, functools.partial(handle, msg))
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


def speaker_of(subject: str) -> str | None:
    """The agent of `agentcom.agent.<id>.<kind>`, else None."""
    parts = subject.split(".")
    return parts[2] if len(parts) == 4 and parts[:2] == [subjects.PREFIX, "agent"] else None


class Settler:
    """Settles the messages of one durable consumer by `policy`."""

    def __init__(
        self,
        js: JetStreamContext,
        consumer: str,
        policy: Policy | None = None,
        on_violation: Callable[[Msg], None] | None = None,
    ) -> None:
        self.js = js
        self.consumer = consumer
        self.policy = policy or Policy()
        self.on_violation = on_violation

    async def run(self, msg: Msg, handler: Callable[[], Awaitable[object]]) -> Verdict:
        """Run `handler` for `msg`, then ack, refuse or retry it."""
        try:
            with telemetry.continued(
                msg.headers, f"process {self.consumer}", SpanKind.CONSUMER, __name__
            ):
                await handler()
        except Exception as exc:  # noqa: BLE001 - every failure is judged, none escapes
            return await self.failed(msg, exc)
        await msg.ack()
        return "acked"

    async def failed(self, msg: Msg, exc: BaseException) -> Verdict:
        judged = judge(exc)
        code, detail = describe(exc)
        if judged == "retry":
            if not isinstance(exc, AgentcomError):
                log.warning(
                    "message.failed",
                    extra={"consumer": self.consumer, "subject": msg.subject, "error": code},
                    exc_info=exc,
                )
            return await self.retry(msg, code, detail)
        return await self.refuse(msg, code, detail, violation=judged == "refuse")

    async def retry(self, msg: Msg, code: str = "unavailable", detail: str = "") -> Verdict:
        """Nak with the policy's delay; at `max_deliver` deliveries refuse it instead."""
        deliveries = _deliveries(msg)
        if deliveries >= self.policy.max_deliver:
            why = f"still failing after {deliveries} deliveries ({code}: {detail})"
            verdict = await self.refuse(msg, "gave_up", why[:500], violation=False)
            return "gave_up" if verdict == "declined" else verdict
        await msg.nak(delay=self.policy.delay(deliveries))
        return "retried"

    async def refuse(self, msg: Msg, code: str, detail: str, *, violation: bool) -> Verdict:
        """Record the message as refused, then term it (never delivered again); `violation`
        also hands it to `on_violation`. Returns `refused` (a violation) or `declined`."""
        meta = _meta(msg)
        seq = meta[0] if meta else None
        record = MessageRefused(
            consumer=self.consumer,
            subject=msg.subject,
            agent_id=speaker_of(msg.subject),
            stream_seq=seq,
            deliveries=meta[1] if meta else 1,
            code=code,
            detail=detail,
            violation=violation,
            at=clock.now(),
        )
        log.warning(
            "message.refused",
            extra={"consumer": self.consumer, "subject": msg.subject, "error": code, "seq": seq},
        )
        try:
            await messaging.publish(
                self.js,
                subjects.MESSAGE_REFUSED,
                record,
                msg_id=f"refused-{self.consumer}-{seq}" if seq is not None else None,
            )
        except Exception:  # noqa: BLE001 - no record, no term: it comes again and is refused then
            log.warning("message.refusal_unrecorded", extra={"subject": msg.subject})
            await msg.nak(delay=self.policy.delay(_deliveries(msg)))
            return "retried"
        await msg.term()
        if violation and self.on_violation is not None:
            self.on_violation(msg)
        return "refused" if violation else "declined"


def _meta(msg: Msg) -> tuple[int, int] | None:
    """(stream sequence, deliveries) of a JetStream message, None for a plain one."""
    try:
        meta = msg.metadata
    except Exception:  # noqa: BLE001 - not delivered by JetStream (a test's core message)
        return None
    return meta.sequence.stream, meta.num_delivered


def _deliveries(msg: Msg) -> int:
    meta = _meta(msg)
    return meta[1] if meta else 1
