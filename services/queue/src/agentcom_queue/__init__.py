"""agentcom-queue: Durable task queue: priorities, retries, dead letter, dependencies, repo registry."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("agentcom-queue")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
