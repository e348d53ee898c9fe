"""What a person watching the sidecar's terminal reads: one plain line per event that matters.

The JSON log on stderr is for machines (and `agentcom logs`); stdout gets a handful of human
lines: connected and waiting, a task started and how it ended, the link lost and back. A
sidecar that printed nothing at start looked hung, and one that logged a warning every second
while the hub was away buried everything else.
"""

import sys
import time


def say(text: str) -> None:
    """One line on stdout, stamped with the local time, flushed (a pipe or a pm2 log sees it)."""
    sys.stdout.write(f"{time.strftime('%H:%M:%S')} {text}\n")
    sys.stdout.flush()


class Repeats:
    """Counts one recurring failure and says when it is worth a line: the 1st, 2nd, 4th, 8th…
    occurrence (a failure every second gets ever rarer lines, not one each)."""

    def __init__(self) -> None:
        self.count = 0
        self.since: float | None = None

    def failed(self) -> bool:
        """Count one more; True if this one should be reported."""
        self.count += 1
        if self.since is None:
            self.since = time.monotonic()
        return self.count & (self.count - 1) == 0  # a power of two

    def seconds(self) -> float:
        return 0.0 if self.since is None else time.monotonic() - self.since

    def reset(self) -> float:
        """Back to none; returns how long the failures lasted."""
        lasted = self.seconds()
        self.count, self.since = 0, None
        return lasted
