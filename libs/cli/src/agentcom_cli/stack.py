"""What a running stack looks like on disk: `<home>/stack.json`, written by `agentcom up`.

`status`, `token` and other commands read it to find the URLs of the stack started from this
directory, even one started with `--port-offset`. It never holds a password: with external
servers the URLs stay in the environment, not in the file.
"""

import json
import os
from pathlib import Path

from pydantic import BaseModel

from agentcom_common.settings import SERVICE_NAMES, CommonSettings


class StackFile(BaseModel):
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
    tmp.write_text(stack.model_dump_json(indent=2))
    os.replace(tmp, path(home))  # readers never see half a file


def read(home: Path) -> StackFile | None:
    try:
        return StackFile.model_validate_json(path(home).read_text())
    except (OSError, ValueError):
        return None


def remove(home: Path) -> None:
    path(home).unlink(missing_ok=True)


def service_urls(settings: CommonSettings, stack: StackFile | None) -> dict[str, str]:
    if stack is not None:
        return stack.services
    return {name: settings.service_url(name) for name in SERVICE_NAMES}


def dumps(data: object) -> str:
    return json.dumps(data, indent=2, default=str)
