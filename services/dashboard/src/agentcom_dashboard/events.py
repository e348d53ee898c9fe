"""Reading `agentcom.evt.>` from the EVENTS stream with ordered consumers.

An ordered consumer is ephemeral, needs no acks and is recreated by the client from the last
sequence it saw if a message goes missing, so a reader never skips an event. The dashboard
uses one for its own counters (from `now - window`) and one per browser socket (from the
sequence that browser saw last).
"""

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from agentcom_common import subjects


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    subject: str
    at: datetime  # when the stream stored it
    data: dict[str, Any]

    @property
    def area(self) -> str:
        """`task` for `agentcom.evt.task.completed`."""
        return self.subject.split(".")[2] if self.subject.count(".") >= 3 else ""

    @property
    def name(self) -> str:
        return self.subject.rsplit(".", 1)[-1]

    def as_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "subject": self.subject,
            "at": self.at.isoformat(),
            "data": self.data,
        }


def decode(msg: Msg) -> Event:
    try:
        body = json.loads(msg.data)
    except ValueError:
        body = {}
    data: dict[str, Any] = body if isinstance(body, dict) else {"value": body}  # pyright: ignore[reportUnknownVariableType]
    meta = msg.metadata
    return Event(meta.sequence.stream, msg.subject, meta.timestamp, data)


async def last_sequence(js: JetStreamContext) -> int:
    info = await js.stream_info(subjects.EVENTS_STREAM)
    return info.state.last_seq


async def follow(
    js: JetStreamContext,
    on_event: Callable[[Event], Awaitable[None]],
    *,
    after_seq: int | None = None,
    since: datetime | None = None,
) -> JetStreamContext.PushSubscription:
    """Deliver every event after `after_seq` (or stored since `since`, or only new ones)."""
    if after_seq is not None:
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after_seq + 1
        )
    elif since is not None:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since)
    else:
        config = ConsumerConfig(deliver_policy=DeliverPolicy.NEW)

    async def handle(msg: Msg) -> None:
        await on_event(decode(msg))

    return await js.subscribe(
        subjects.EVENTS_ALL,
        stream=subjects.EVENTS_STREAM,
        cb=handle,
        ordered_consumer=True,
        config=config,
    )
