"""Supervisor files for `agentcom sidecar install-service`: a systemd user unit and a pm2 app.

Both run `python -m agentcom_sidecar run --config <file>` from the state dir (never a
workspace), restart it whenever it exits (a `restart` command exits 0 on purpose) and tell the
sidecar which supervisor runs it through `AGENTCOM_SUPERVISOR`.
"""

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from agentcom_sidecar.config import SidecarConfig


@dataclass(frozen=True, slots=True)
class Written:
    systemd_unit: Path
    pm2_ecosystem: Path


def unit_name(config: SidecarConfig) -> str:
    return f"agentcom-sidecar-{config.agent_id}"


def systemd_unit(config: SidecarConfig, python: str = sys.executable) -> str:
    return "\n".join(
        [
            "[Unit]",
            f"Description=AgentCom sidecar for agent {config.agent_id}",
            "After=network-online.target",
            "Wants=network-online.target",
            "",
            "[Service]",
            "Type=simple",
            f"WorkingDirectory={config.state}",
            f'ExecStart="{python}" -m agentcom_sidecar run --config "{config.path}"',
            "Environment=AGENTCOM_SUPERVISOR=systemd",
            "Restart=always",
            "RestartSec=2",
            "KillMode=control-group",
            "TimeoutStopSec=30",
            "",
            "[Install]",
            "WantedBy=default.target",
            "",
        ]
    )


def pm2_ecosystem(config: SidecarConfig, python: str = sys.executable) -> str:
    app = {
        "name": unit_name(config),
        "script": python,
        "args": ["-m", "agentcom_sidecar", "run", "--config", str(config.path)],
        "interpreter": "none",
        "cwd": str(config.state),
        "autorestart": True,
        "restart_delay": 2000,
        "min_uptime": 5000,
        "max_restarts": 50,
        "kill_timeout": 30000,
        "env": {"AGENTCOM_SUPERVISOR": "pm2"},
    }
    return f"module.exports = {{ apps: [{json.dumps(app, indent=2)}] }};\n"


def install(config: SidecarConfig, systemd_dir: Path) -> Written:
    """Write both files; the unit goes to `systemd_dir`, the pm2 file to the state dir."""
    config.state.mkdir(parents=True, exist_ok=True, mode=0o700)
    systemd_dir.mkdir(parents=True, exist_ok=True)
    unit = systemd_dir / f"{unit_name(config)}.service"
    unit.write_text(systemd_unit(config))
    ecosystem = config.state / "ecosystem.config.js"
    ecosystem.write_text(pm2_ecosystem(config))
    return Written(unit, ecosystem)
