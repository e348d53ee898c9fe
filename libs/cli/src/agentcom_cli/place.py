"""Where this directory's stack is (home, admin token, service URLs), found fast.

Most commands need only three settings: `AGENTCOM_HOME`, `AGENTCOM_PORT_OFFSET` and
`AGENTCOM_PUBLIC_HOST`. Reading them through `CommonSettings` imports pydantic-settings, which
alone takes ~0.2 s, so `locate()` reads them from the environment itself, with the same names
(case-insensitive, as pydantic-settings reads them) and defaults. Whenever that could differ from
what `CommonSettings` would say (a `.env` file here, a value it would refuse), it asks
`CommonSettings`, which stays the one authority (and turns a bad value into a clear error).
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from agentcom_common import ports

if TYPE_CHECKING:
    from agentcom_common.settings import CommonSettings


class Where(Protocol):
    """What a command needs to reach the stack; `CommonSettings` has it too."""

    @property
    def home(self) -> Path: ...

    @property
    def admin_token_path(self) -> Path: ...

    def service_url(self, service: str) -> str: ...


@dataclass(frozen=True, slots=True)
class Place:
    home: Path
    public_host: str
    port_offset: int

    @property
    def admin_token_path(self) -> Path:
        return self.home / "admin.token"

    def service_url(self, service: str) -> str:
        return ports.service_url(self.public_host, service, self.port_offset)


def locate() -> Where:
    """This directory's stack settings: read directly when unambiguous, else `CommonSettings`."""
    found = _from_environment()
    return found if found is not None else settings()


def settings() -> "CommonSettings":
    """Every setting, through pydantic (slower); a bad value is a one-line error."""
    from agentcom_cli.console import fail
    from agentcom_common.settings import CommonSettings

    try:
        return CommonSettings()
    except ValueError as exc:
        fail(f"bad setting: {exc}")


def _from_environment() -> Place | None:
    if Path(".env").exists():  # pydantic-settings reads it; so must we, so it decides
        return None
    env = {k.upper(): v for k, v in os.environ.items() if k.upper().startswith("AGENTCOM_")}
    offset = env.get("AGENTCOM_PORT_OFFSET", "0").strip()
    if not offset.isdigit() or int(offset) > ports.MAX_PORT_OFFSET:
        return None  # CommonSettings explains what is wrong with it
    return Place(
        home=Path(env.get("AGENTCOM_HOME", ".agentcom")),
        public_host=env.get("AGENTCOM_PUBLIC_HOST", "127.0.0.1"),
        port_offset=int(offset),
    )
