"""The hub's state as this service last heard it: which hub budget the hub's calls pay into
(`hub:<state>`), kept at the newest `agentcom.evt.hub.state_changed`."""

import contextlib
import logging
from datetime import datetime

import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from agentcom_common import subjects
from agentcom_common.contracts.hub import HubState, HubStateChanged

log = logging.getLogger(__name__)


class HubStateFollower:
    def __init__(self) -> None:
        self.state = HubState.RESTING  # until the hub announces one
        self._at: datetime | None = None

    async def follow(self, nc: Client, js: JetStreamContext) -> None:
        """Keep `state` at the newest `agentcom.evt.hub.state_changed`: the one stored in
        EVENTS now, then each one published (the subscription lives as long as the NATS
        connection). Only services may publish there."""
        await nc.subscribe(subjects.HUB_STATE_CHANGED, cb=self._on_msg)  # pyright: ignore[reportUnknownMemberType]  # nats-py: untyped Future parameter
        with contextlib.suppress(nats.js.errors.NotFoundError):  # the hub announced none yet
            last = await js.get_last_msg(subjects.EVENTS_STREAM, subjects.HUB_STATE_CHANGED)
            self.take(last.data or b"")

    async def _on_msg(self, msg: Msg) -> None:
        self.take(msg.data)

    def take(self, data: bytes) -> None:
        """Follow one `HubStateChanged`; an older one than the state held is ignored."""
        try:
            event = HubStateChanged.model_validate_json(data)
        except ValueError:
            log.warning("hub_state.unreadable")
            return
        if self._at is None or event.at >= self._at:  # newest wins
            self.state, self._at = event.state, event.at
            log.info("hub_state.followed", extra={"state": event.state})
