"""In-process wake-ups of the matcher: a change committed here that may let an idle agent
take work (an agent became idle or came online) wakes this process's matching at once,
instead of after its event made the round trip through the outbox relay and JetStream.

The `agentcom.evt.*` events still wake every replica's matcher; this only cuts the delay for
the process that made the change.
"""

import asyncio

_matchers: set[asyncio.Event] = set()


def register(event: asyncio.Event) -> None:
    _matchers.add(event)


def unregister(event: asyncio.Event) -> None:
    _matchers.discard(event)


def matching() -> None:
    """Wake this process's matchers (call after the commit that freed an agent)."""
    for event in _matchers:
        event.set()
