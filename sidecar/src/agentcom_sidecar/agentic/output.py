"""A command's output, bounded: the first and last bytes of each stream, and a kill switch."""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

_ESCAPED_GRACE = 2.0
"""Seconds to wait for EOF after the kill: a child that escaped the group (setsid without
namespaces) may hold the pipe open forever."""


@dataclass(slots=True)
class Meter:
    """Bytes seen on all streams of one command; `over` is set past `kill_at`."""

    kill_at: int
    total: int = 0
    over: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(slots=True)
class Captured:
    """The first and the last `cap / 2` bytes of a stream: the start and the error at the end."""

    head: bytearray = field(default_factory=bytearray)
    tail: bytearray = field(default_factory=bytearray)
    truncated: bool = False

    def text(self) -> str:
        if not self.truncated:
            return (self.head + self.tail).decode(errors="replace")
        return (self.head + b"\n[... output truncated ...]\n" + self.tail).decode(errors="replace")


async def drain(stream: asyncio.StreamReader, captured: Captured, cap: int, meter: Meter) -> None:
    """Read `stream` to EOF into `captured` (head and tail); the rest is counted and dropped."""
    half = cap // 2
    while chunk := await stream.read(65536):
        meter.total += len(chunk)
        room = half - len(captured.head)
        if room > 0:
            captured.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            captured.tail += chunk
            if len(captured.tail) > half:
                del captured.tail[: len(captured.tail) - half]
                captured.truncated = True
        if meter.total > meter.kill_at:
            meter.over.set()


async def settle(readers: Sequence["asyncio.Future[None]"]) -> None:
    """Wait until the readers reached EOF, or stop them after a short grace."""
    _, pending = await asyncio.wait(readers, timeout=_ESCAPED_GRACE)
    for reader in pending:
        reader.cancel()
