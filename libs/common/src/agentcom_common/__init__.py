"""AgentCom's shared library: contracts, subjects, settings and infrastructure helpers.

Every service and the sidecar import this package; it imports none of them.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("agentcom-common")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
