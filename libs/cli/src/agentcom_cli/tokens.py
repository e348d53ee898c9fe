"""The admin token file and the token API client.

`agentcom up` makes sure `<home>/admin.token` (mode 0600) holds a live admin token; every CLI
command uses it unless `AGENTCOM_TOKEN` is set.
"""

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentcom_cli.place import Where
    from agentcom_common.settings import CommonSettings


def read_token(settings: "Where") -> str | None:
    """`AGENTCOM_TOKEN`, else the admin token file, else None."""
    if token := os.environ.get("AGENTCOM_TOKEN"):
        return token
    try:
        return settings.admin_token_path.read_text().strip() or None
    except OSError:
        return None


def write_secret(path: Path, secret: str) -> None:
    """Write `secret` readable by its owner only; never visible with wider permissions."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    os.replace(tmp, path)


def missing(settings: "Where") -> str:
    """What to do when there is no token: the usual cause is a shell in another directory, so
    name the directory of a running stack when there is one."""
    from agentcom_cli import stack

    looked = f"no stack in this directory (no admin token at {settings.admin_token_path})"
    homes = stack.running_elsewhere()
    if len(homes) == 1:  # `run from` works only where the home has the default name
        there = f" or run from {homes[0].parent}" if homes[0].name == ".agentcom" else ""
        return f"{looked}; set AGENTCOM_HOME={homes[0]}{there}"
    if homes:
        return f"{looked}; set AGENTCOM_HOME to one of the running stacks' homes: " + ", ".join(
            str(home) for home in homes
        )
    return (
        f"{looked}; start one with `agentcom up`, or set AGENTCOM_HOME to the .agentcom "
        "folder of the directory where it runs, or run from there (or set AGENTCOM_TOKEN)"
    )


async def bootstrap_admin(settings: "CommonSettings") -> None:
    """Ensure the token file holds a live admin token; create one on first start."""
    from agentcom_common import auth, db  # SQLAlchemy: only `up` needs it, not every command

    engine = db.create_engine(settings, pool_size=1)
    try:
        await auth.migrate(engine)
        try:
            current = settings.admin_token_path.read_text().strip()
        except FileNotFoundError:
            current = ""
        if current:
            principal = await auth.lookup(engine, current)
            if principal is not None and principal.role is auth.Role.ADMIN:
                return
        issued = await auth.issue(engine, auth.Role.ADMIN, "admin (created by agentcom up)")
        write_secret(settings.admin_token_path, issued.token)
    finally:
        await engine.dispose()
