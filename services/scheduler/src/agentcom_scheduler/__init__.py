"""agentcom-scheduler: Agents, credentials, presence, per-agent state machines and task matching."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("agentcom-scheduler")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
