"""`agentcom sidecar …`: run one agent's sidecar, show its status, install it as a service.

Exposed to the `agentcom` command through the `agentcom.commands` entry point group, so the
CLI package never imports the sidecar. `python -m agentcom_sidecar …` is the same app.
"""

import json
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from agentcom_common.errors import AgentcomError

if TYPE_CHECKING:
    from agentcom_sidecar import config as sidecar_config

# Every `agentcom` call loads this module (the entry point registers `agentcom sidecar`), so
# it imports only typer at the top; each command imports the sidecar's parts when it runs.

app = typer.Typer(
    help="Run this machine's agent: its inbox, work, verification and pull requests.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="The agent's config file (agentcom agent add).")
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _load(path: Path) -> "sidecar_config.SidecarConfig":
    from agentcom_sidecar import config as sidecar_config

    try:
        return sidecar_config.load(path)
    except AgentcomError as exc:
        typer.secho(f"error: {exc.detail}", fg="red", err=True)
        raise typer.Exit(1) from None


@app.command()
def run(config: ConfigOption) -> None:
    """Run the sidecar until stopped; exit 0 after a `restart` so the supervisor restarts it.

    Refuses a config file readable by others, and a layout that puts the config, the state dir
    or the sidecar's code inside the workspaces (error: invalid_field).
    """
    import asyncio

    from agentcom_common import logs, telemetry
    from agentcom_sidecar.runner import Sidecar

    loaded = _load(config)
    loaded.state.mkdir(parents=True, exist_ok=True, mode=0o700)
    logs.configure(f"sidecar-{loaded.agent_id}")
    # service.name agentcom-sidecar: the collector forwards these metrics (the services' not)
    telemetry.configure("sidecar", os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))

    async def serve() -> int:
        try:
            sidecar = Sidecar(loaded)
        except AgentcomError as exc:
            typer.secho(f"error: {exc.detail}", fg="red", err=True)
            return 1
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, sidecar.stopping.set)
        return await sidecar.run()

    raise typer.Exit(asyncio.run(serve()))


@app.command()
def status(config: ConfigOption, as_json: JsonFlag = False) -> None:
    """Show the connection, the current task and the journal; exit 1 if the sidecar is not running."""
    from agentcom_sidecar.journal import Journal

    loaded = _load(config)
    found: dict[str, Any] = {"agent_id": loaded.agent_id, "running": False}
    if loaded.status_path.exists():
        found |= json.loads(loaded.status_path.read_text())
        fresh = time.time() - float(found.get("updated_at", 0)) < 3 * loaded.heartbeat_interval
        found["running"] = fresh and _alive(int(found.get("pid", 0)))
    if loaded.journal_path.exists():
        journal = Journal(loaded.journal_path)
        found["journal"] = journal.counts()
        journal.close()
    if as_json:
        typer.echo(json.dumps(found))
    else:
        for key, value in found.items():
            typer.echo(f"{key}: {value}")
    if not found["running"]:
        raise typer.Exit(1)


def _alive(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}").stat()
    except OSError:
        return False
    return pid > 0


@app.command("install-service")
def install_service(
    config: ConfigOption,
    systemd_dir: Annotated[
        Path | None,
        typer.Option(help="Where the systemd user unit goes [default: ~/.config/systemd/user]."),
    ] = None,
) -> None:
    """Write a systemd user unit and a pm2 ecosystem file that keep this sidecar running.

    Then: `systemctl --user daemon-reload && systemctl --user enable --now <unit>`, or
    `pm2 start <state dir>/ecosystem.config.js && pm2 save`.
    """
    from agentcom_sidecar import service_files

    loaded = _load(config)
    target = systemd_dir or Path.home() / ".config" / "systemd" / "user"
    written = service_files.install(loaded, target)
    name = service_files.unit_name(loaded)
    typer.echo(f"systemd unit: {written.systemd_unit}")
    typer.echo(f"  systemctl --user daemon-reload && systemctl --user enable --now {name}")
    typer.echo(f"pm2 file: {written.pm2_ecosystem}")
    typer.echo(f"  pm2 start {written.pm2_ecosystem} && pm2 save")
