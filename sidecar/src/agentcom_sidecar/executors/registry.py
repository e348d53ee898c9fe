"""Which executor does a task: the registry of executor factories and the choice rule.

Rule (shared with the agent-loop work): `task.metadata["executor"]` if given (`scan`: the
improvement scanners, which an agent runs only when its config lists it); else `shell` when
`metadata["command"]` is given; else by complexity tier (trivial/standard -> ollama,
complex -> claude), which the config's `tier_executor` may override. LLM executors register a
factory here (`register("ollama", factory)`) from `agentcom_sidecar.agentic`; a task choosing
one that is not registered or not enabled in the config is rejected with that reason.
"""

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from agentcom_common.contracts.task import TaskView
from agentcom_sidecar import namespaces, processes
from agentcom_sidecar.agentic.settings import AgenticSettings
from agentcom_sidecar.config import SidecarConfig
from agentcom_sidecar.executors.base import Executor
from agentcom_sidecar.executors.scan import ScanExecutor
from agentcom_sidecar.executors.shell import ShellExecutor


@dataclass(frozen=True, slots=True)
class Hooks:
    """What the sidecar gives an executor it builds for one task."""

    on_line: processes.LineSink
    on_start: Callable[[int], None]
    confine: namespaces.Confinement | None = None
    """How the task's shell and verification commands are contained (`confinement`)."""


Factory = Callable[[SidecarConfig, Hooks], Executor]
AGENT_LOOP: Final = ("ollama", "claude")

_FACTORIES: dict[str, Factory] = {
    "shell": lambda config, hooks: ShellExecutor(
        hooks.on_line, hooks.on_start, config.kill_grace, hooks.confine
    ),
    # reads the workspace, runs none of its code: opt-in by `executors`, no hub commands needed
    "scan": lambda config, _hooks: ScanExecutor(hidden(config)),
}


def register(name: str, factory: Factory) -> None:
    _FACTORIES[name] = factory


def unregister(name: str) -> None:
    _FACTORIES.pop(name, None)


def _agent_loop(name: str) -> Factory:
    """`ollama` / `claude`: the agent loop of `agentcom_sidecar.agentic`, imported on first use,
    talking to the gateway with the agent's token; the config and state dir stay hidden."""

    def factory(config: SidecarConfig, hooks: Hooks) -> Executor:
        del hooks  # the agent loop reports through ExecutionContext.emit
        agentic = importlib.import_module("agentcom_sidecar.agentic.executors")
        settings_module = importlib.import_module("agentcom_sidecar.agentic.settings")
        gateway = config.gateway_url or config.hub_urls.get("llm-registry")
        options: dict[str, Any] = {"agentic_token": config.token}
        if gateway:
            options["agentic_gateway_url"] = gateway
        settings = settings_module.AgenticSettings(**options)
        built: Executor = agentic.build(name, settings, hidden=hidden(config))
        return built

    return factory


def hidden(config: SidecarConfig) -> tuple[Path, ...]:
    """What no command of a task may read: the config file (agent token, NATS password, GitHub
    token) and the state dir (journal, status)."""
    return (config.path, config.state)


def _load_plugins() -> None:
    """Register the agent-loop executors if their package is installed."""
    if importlib.util.find_spec("agentcom_sidecar.agentic") is None:
        return
    for name in AGENT_LOOP:
        _FACTORIES.setdefault(name, _agent_loop(name))


def choose(task: TaskView, config: SidecarConfig) -> str:
    named: object = task.metadata.get("executor")
    if isinstance(named, str):
        return named
    if "command" in task.metadata:
        return "shell"
    tier = task.complexity.tier.value
    return config.tier_executor.get(tier, "claude" if tier == "complex" else "ollama")


def _shell_state(config: SidecarConfig) -> namespaces.Isolation | None:
    """What holds for the shell and verification commands (None: this agent runs none)."""
    if not config.allow_hub_commands:
        return None
    return namespaces.state(config.shell_isolation)


def _loop_state(config: SidecarConfig) -> namespaces.Isolation | None:
    if not any(name in config.executors for name in AGENT_LOOP):
        return None
    return namespaces.state(AgenticSettings().agentic_isolation)


def isolation(config: SidecarConfig) -> namespaces.Isolation | None:
    """What holds for the commands this agent runs for tasks (the weakest of the agent loop's
    and the shell's, `namespaces.weakest`), None when it runs none. Blocks for the one-time
    namespace probe: call it in a thread."""
    return namespaces.weakest([s for s in (_shell_state(config), _loop_state(config)) if s])


def confinement(config: SidecarConfig) -> namespaces.Confinement | None:
    """The sandbox of a task's shell and verification commands, None when they run unisolated
    (`unavailable` never gets here: `commands_refused` refused the task); it hides `hidden`.
    Blocks like `isolation`."""
    if _shell_state(config) != "namespaces":
        return None
    return namespaces.Confinement(hidden(config), network=config.shell_network)


def commands_refused(config: SidecarConfig) -> tuple[str, str] | None:
    """Why this agent runs no shell or verification command now (isolation is required and
    cannot be made), or None. Blocks like `isolation`."""
    if _shell_state(config) != "unavailable":
        return None
    return (
        "isolation_unavailable",
        "this agent must run a task's shell and verification commands isolated "
        "(shell_isolation: namespaces) and this machine cannot make user namespaces "
        "(unshare --user failed or is missing), so it runs none",
    )


def unavailable(name: str, config: SidecarConfig) -> tuple[str, str] | None:
    """Why this agent cannot run executor `name` (a rejection code of PERMANENT_REJECTIONS and
    the reason), or None if it can. Blocks like `isolation`."""
    _load_plugins()
    if name not in config.executors:
        return "executor_unavailable", f"executor {name} is not enabled on this agent"
    if name not in _FACTORIES:
        return "executor_unavailable", f"executor {name} is not installed in this sidecar"
    if name == "shell" and not config.allow_hub_commands:
        return (
            "hub_commands_off",
            "this agent does not run shell commands from the hub (allow_hub_commands is off)",
        )
    if name == "shell" and (refused := commands_refused(config)):
        return refused
    if name in AGENT_LOOP and _loop_state(config) == "unavailable":
        return (
            "isolation_unavailable",
            f"executor {name} must run its commands isolated here "
            "(AGENTCOM_AGENTIC_ISOLATION=namespaces) and this machine cannot make user "
            "namespaces (unshare --user failed or is missing), so it runs no LLM task",
        )
    return None


def build(name: str, config: SidecarConfig, hooks: Hooks) -> Executor:
    return _FACTORIES[name](config, hooks)
