"""Which executor does a task: the registry of executor factories and the choice rule.

Rule (shared with the agent-loop work): `task.metadata["executor"]` if given; else `shell` when
`metadata["command"]` is given; else by complexity tier (trivial/standard -> ollama,
complex -> claude), which the config's `tier_executor` may override. LLM executors register a
factory here (`register("ollama", factory)`) from `agentcom_sidecar.agentic`; a task choosing
one that is not registered or not enabled in the config is rejected with that reason.
"""

import contextlib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agentcom_sidecar import processes, taskdata
from agentcom_sidecar.config import SidecarConfig
from agentcom_sidecar.executors.base import Executor
from agentcom_sidecar.executors.shell import ShellExecutor


@dataclass(frozen=True, slots=True)
class Hooks:
    """What the sidecar gives an executor it builds for one task."""

    on_line: processes.LineSink
    on_start: Callable[[int], None]


Factory = Callable[[SidecarConfig, Hooks], Executor]

_FACTORIES: dict[str, Factory] = {
    "shell": lambda config, hooks: ShellExecutor(hooks.on_line, hooks.on_start, config.kill_grace),
}


def register(name: str, factory: Factory) -> None:
    _FACTORIES[name] = factory


def unregister(name: str) -> None:
    _FACTORIES.pop(name, None)


_PLUGINS = ("agentcom_sidecar.agentic",)
_loaded: list[str] = []


def _load_plugins() -> None:
    """Import the LLM executors' package once if it is installed; it calls `register`."""
    if _loaded:
        return
    _loaded.append("done")
    for module in _PLUGINS:
        with contextlib.suppress(ModuleNotFoundError):
            importlib.import_module(module)


def choose(task: Mapping[str, Any], config: SidecarConfig) -> str:
    metadata = taskdata.metadata(task)
    named: object = metadata.get("executor")
    if isinstance(named, str):
        return named
    if "command" in metadata:
        return "shell"
    tier = str(taskdata.as_dict(task.get("complexity")).get("tier", "standard"))
    return config.tier_executor.get(tier, "claude" if tier == "complex" else "ollama")


def unavailable(name: str, config: SidecarConfig) -> str | None:
    """Why this agent cannot run executor `name`, or None if it can."""
    _load_plugins()
    if name not in config.executors:
        return f"executor {name} is not enabled on this agent"
    if name not in _FACTORIES:
        return f"executor {name} is not installed in this sidecar"
    if name == "shell" and not config.allow_hub_commands:
        return "this agent does not run shell commands from the hub (allow_hub_commands is off)"
    return None


def build(name: str, config: SidecarConfig, hooks: Hooks) -> Executor:
    return _FACTORIES[name](config, hooks)
