"""agentcom-hubfsm: The hub's brain: goals backlog, hub state machine, decomposition, healing."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("agentcom-hubfsm")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
