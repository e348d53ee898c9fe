"""The namespace sandbox every command of a task runs in: the agent loop's, a shell task's and
its verification commands.

Under `unshare` in new user, mount and pid namespaces (and a net namespace when the caller asks
for no network), the whole file system is remounted read-only except the workspace; its `.git`
stays read-only, so no hook or config can be planted for the sidecar's own git commands; the
given paths (the agent's config file with its tokens, its state dir with the journal) are
hidden; `/dev/shm` is a private tmpfs used as HOME and TMPDIR; and when the command's first
process ends the kernel kills every process left in its pid namespace. The command runs as the
root of a user namespace that has no power outside it.
"""

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

Isolation = Literal["namespaces", "none", "unavailable"]
"""What holds for a task's commands on this machine (the heartbeat's `isolation`)."""
Mode = Literal["auto", "namespaces", "none"]
"""What the operator asked for: `namespaces` required, `auto` when possible, `none` never."""

# Runs as root of a fresh user namespace (no power outside it): bind the workspace onto itself so
# it stays writable, protect its .git, hide the given paths, then remount every other mount
# read-only, and refuse to run (exit 125) if any other mount stayed writable. "$@" is: workspace,
# number of hidden paths, hidden paths…, then the command argv.
ISOLATE_SCRIPT: Final = r"""set -e
ws="$1"; nhide="$2"; shift 2
mount --bind "$ws" "$ws"
if [ -d "$ws/.git" ]; then mount --bind "$ws/.git" "$ws/.git"; mount -o remount,bind,ro "$ws/.git"; fi
mount -t tmpfs -o size=256m,mode=1777 tmpfs /dev/shm
while [ "$nhide" -gt 0 ]; do
  if [ -d "$1" ]; then mount -t tmpfs -o size=1k,mode=0 tmpfs "$1";
  elif [ -e "$1" ]; then mount --bind /dev/null "$1"; fi
  shift; nhide=$((nhide - 1))
done
awk '{print $2}' /proc/self/mounts | sort -u | while read -r mp; do
  case "$mp" in "$ws"|/dev/shm|/proc|/proc/*) continue;; esac
  mount -o remount,bind,ro "$mp" 2>/dev/null || true
done
awk -v ws="$ws" '{ gsub(/\\040/, " ", $2) }
  $4 ~ /^rw/ && $2 != ws && $2 != "/dev/shm" && $2 != "/dev/pts" && $2 !~ /^\/proc(\/|$)/ {
    print "sandbox: " $2 " stayed writable; refusing to run" > "/dev/stderr"; bad = 1 }
  END { exit bad ? 125 : 0 }' /proc/self/mounts
export HOME=/dev/shm TMPDIR=/dev/shm
cd "$ws"
exec "$@"
"""
_FLAGS: Final = (
    "--user",
    "--map-root-user",
    "--mount",
    "--pid",
    "--fork",
    "--mount-proc",
    "--kill-child",
)


@dataclass(frozen=True, slots=True)
class Confinement:
    """How one task's commands are contained (built once per task from the agent's config)."""

    hidden: tuple[Path, ...] = ()
    """Paths a command must not even read: a folder becomes an empty unreadable tmpfs, a file
    /dev/null."""
    network: bool = False

    def argv(self, workspace: Path, argv: Sequence[str]) -> list[str]:
        """`argv` wrapped to run confined with `workspace` (made real) as its only writable
        place. The `unshare` process is the one the caller starts, so its pid and process group
        are what the caller journals and kills."""
        hidden = [os.path.realpath(p) for p in self.hidden]
        flags = _FLAGS if self.network else (*_FLAGS, "--net")
        return [
            "unshare",
            *flags,
            "sh",
            "-c",
            ISOLATE_SCRIPT,
            "sandbox",
            os.path.realpath(workspace),
            str(len(hidden)),
            *hidden,
            *argv,
        ]


@functools.cache
def available() -> bool:
    """Whether `unshare` can make the namespaces here, net included (probed once, ~20 ms)."""
    if shutil.which("unshare") is None:
        return False
    with tempfile.TemporaryDirectory() as scratch:
        probe = subprocess.run(
            Confinement().argv(Path(scratch), ["true"]),
            capture_output=True,
            check=False,
            timeout=10,
        )
    return probe.returncode == 0


def state(mode: Mode) -> Isolation:
    """`namespaces` when commands run isolated, `none` when they run without (`none`, or `auto`
    on a kernel without user namespaces), `unavailable` when `namespaces` is required but the
    kernel cannot make them: the sidecar then refuses those tasks. Probes once (blocking)."""
    if mode == "none":
        return "none"
    if available():
        return "namespaces"
    return "unavailable" if mode == "namespaces" else "none"


def weakest(states: Sequence[Isolation]) -> Isolation | None:
    """One state for several kinds of command: `unavailable` (some tasks are refused) before
    `none` (some commands run unisolated) before `namespaces`; None for no commands at all."""
    for worst in ("unavailable", "none", "namespaces"):
        if worst in states:
            return worst
    return None
