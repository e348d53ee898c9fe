"""agentcom-llm-registry: LLM endpoints, health, model discovery, routing, chat gateway and cost ledger."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("agentcom-llm-registry")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
