"""agentcom-dashboard: The web dashboard: live events, metrics, alert rules, push notifications."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("agentcom-dashboard")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
