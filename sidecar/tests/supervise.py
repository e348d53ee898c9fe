"""A minimal supervisor for the restart test: run the command, and run it again when it exits.

Usage: python supervise.py <exits-file> <max-starts> <command...>. Each exit code is appended to
<exits-file>; the child learns who supervises it from AGENTCOM_SUPERVISOR. SIGTERM stops both.
"""

import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType


def main() -> int:
    exits, starts, command = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    child: subprocess.Popen[bytes] | None = None
    stopping: list[bool] = []

    def stop(_sig: int, _frame: FrameType | None) -> None:
        # only signal here: waiting inside the handler would deadlock on Popen's wait lock
        stopping.append(True)
        if child is not None:
            child.terminate()

    signal.signal(signal.SIGTERM, stop)
    for _ in range(starts):
        child = subprocess.Popen(command)
        code = child.wait()
        if stopping:
            return 0
        with exits.open("a") as out:
            out.write(f"{code}\n")
        time.sleep(0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
