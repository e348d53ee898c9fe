"""In-process wake-ups of the matcher: a change committed here that may let an idle agent
take work (an agent became idle or came online) wakes this app's matching at once, instead of
after its event made the round trip through the outbox relay and JetStream.

The `agentcom.evt.*` events still wake every replica's matcher; this only cuts the delay for
the app that made the change. One `Wakeups` per app (on its `ops.Scheduler`), so two apps in
one process wake only their own matchers.
"""

import asyncio
from collections.abc import Callable


class Wakeups:
    def __init__(self) -> None:
        self._matchers: dict[asyncio.Event, Callable[[], None] | None] = {}

    def register(self, event: asyncio.Event, on_refresh: Callable[[], None] | None = None) -> None:
        """`event` is set on every wake-up; `on_refresh` is called when an agent came online (a
        matcher's cached view of idle agents may lack its profile)."""
        self._matchers[event] = on_refresh

    def unregister(self, event: asyncio.Event) -> None:
        self._matchers.pop(event, None)

    def matching(self, *, refresh: bool = False) -> None:
        """Wake this app's matchers (call after the commit that freed an agent); `refresh`
        when an agent came online."""
        for event, on_refresh in self._matchers.items():
            if refresh and on_refresh is not None:
                on_refresh()
            event.set()
