"""What a running stack looks like on disk: `<home>/stack.json`, written by `agentcom up`.

`status`, `token` and other commands read it to find the URLs of the stack started from this
directory, even one started with `--port-offset`. It never holds a password: with external
servers the URLs stay in the environment, not in the file. Plain dataclass and `json`, no
pydantic: every command reads this file, and they must start fast.
"""

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentcom_common.ports import SERVICE_NAMES

if TYPE_CHECKING:
    from agentcom_cli.place import Where
    from agentcom_common.settings import CommonSettings


@dataclass(frozen=True, slots=True)
class StackFile:
    pid: int
    port_offset: int
    nats_url: str
    nats_monitor_url: str | None
    database_url: str | None  # only for the embedded server, which has no password
    services: dict[str, str]
    children: dict[str, int]
    logs: str


def path(home: Path) -> Path:
    return home / "stack.json"


def write(home: Path, stack: StackFile) -> None:
    tmp = path(home).with_suffix(".tmp")
    tmp.write_text(dumps(asdict(stack)))
    os.replace(tmp, path(home))  # readers never see half a file


def read(home: Path) -> StackFile | None:
    """The stack file, or None when there is none (or it is not one `agentcom up` wrote)."""
    try:
        data: Any = json.loads(path(home).read_text())
    except (OSError, ValueError):
        return None
    names = [f.name for f in fields(StackFile)]
    if not isinstance(data, dict) or not all(name in data for name in names):
        return None
    values: dict[str, Any] = {name: data[name] for name in names}
    if not isinstance(values["services"], dict) or not isinstance(values["pid"], int):
        return None
    return StackFile(**values)


def remove(home: Path) -> None:
    path(home).unlink(missing_ok=True)


def service_urls(where: "Where", stack: StackFile | None) -> dict[str, str]:
    if stack is not None:
        return stack.services
    return {name: where.service_url(name) for name in SERVICE_NAMES}


def hub_nats_url(settings: "CommonSettings") -> str:
    """Where and how this host logs in to the stack's NATS as the hub: AGENTCOM_NATS_URL, else
    the running stack's server (or the default port) with the hub login `agentcom up` keeps in
    `<home>/nats-auth.json` (0600)."""
    from agentcom_common import natsauth

    if settings.nats_url:
        return settings.nats_url
    running = read(settings.home)
    url = running.nats_url if running else f"nats://127.0.0.1:{settings.nats_client_port}"
    login = settings.home / "nats-auth.json"
    if not login.exists():
        return url
    return natsauth.ServerAuth.load_or_create(login).hub_url(url)


def dumps(data: object) -> str:
    return json.dumps(data, indent=2, default=str)


def running_elsewhere() -> list[Path]:
    """The homes of this user's running `agentcom up` processes (from /proc), for telling a
    user in the wrong directory where the stack is. Empty where /proc is not readable."""
    found: list[Path] = []
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return found
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            if not _is_up(argv):
                continue
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
            environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        except OSError:  # gone meanwhile, or another user's
            continue
        env: dict[str, str] = {}
        for line in environ.split("\0"):
            key, _, value = line.partition("=")
            env[key] = value
        home = cwd / env.get("AGENTCOM_HOME", ".agentcom")
        if path(home).exists() and home not in found:
            found.append(home)
    return found


def _is_up(argv: list[str]) -> bool:
    for n, arg in enumerate(argv):
        if arg == "agentcom" or arg.endswith(("/agentcom", "agentcom_cli")):
            return "up" in argv[n + 1 :]
    return False
