"""The services' names and default HTTP ports, with nothing else imported.

`CommonSettings` computes every service URL from these; the `agentcom` CLI reads them too when it
finds its stack without pydantic (importing pydantic-settings alone costs ~0.2 s, and
`agentcom task list` must answer in well under half a second).
"""

from typing import Final

SERVICE_NAMES: Final = ("dashboard", "queue", "scheduler", "llm-registry", "hubfsm")
"""The HTTP services, in the order `agentcom up` starts them (its base port order too)."""

BASE_PORTS: Final[dict[str, int]] = {
    "dashboard": 8100,
    "queue": 8101,
    "scheduler": 8102,
    "llm-registry": 8103,
    "hubfsm": 8104,
}

MAX_PORT_OFFSET: Final = 57000
"""The largest `port_offset`: the highest base port plus it stays a valid port."""

REPLICA_PORT_STEP: Final = 10
"""`agentcom up --replicas N`: replica k (from 1) of a service listens on its port plus
`(k - 1) * 10` (queue: 8101, 8111, 8121...), so the replicas of the five services never meet."""


def replica_name(service: str, replica: int) -> str:
    """The first replica is the service's own name; the others `<service>-<k>`."""
    return service if replica == 1 else f"{service}-{replica}"


def replica_port(service: str, port_offset: int, replica: int) -> int:
    return BASE_PORTS[service] + port_offset + (replica - 1) * REPLICA_PORT_STEP


def service_url(public_host: str, service: str, port_offset: int) -> str:
    """`http://<public_host>:<base port + offset>` of one service."""
    return f"http://{public_host}:{BASE_PORTS[service] + port_offset}"
