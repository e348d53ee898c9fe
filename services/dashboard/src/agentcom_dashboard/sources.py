"""Calls to the services that own the data: reads with the dashboard's viewer token, actions
with the logged-in admin's own token.

A read that fails (service not running yet, not built yet, slow, an error) becomes
`{"available": false, "detail": ...}` so the panel says so and the rest of the page still works.
"""

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import httpx

from agentcom_common.errors import (
    AgentcomError,
    ConflictError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    UnauthorizedError,
    UnavailableError,
)

log = logging.getLogger(__name__)

READS: dict[str, tuple[str, str]] = {
    # each panel and the (service, path) it is read from
    "stats": ("queue", "/api/tasks/stats"),
    "tasks": ("queue", "/api/tasks?limit=100"),
    "dead_letter": ("queue", "/api/tasks/dead-letter?limit=100"),
    "agents": ("scheduler", "/api/agents"),
    "llm_endpoints": ("llm-registry", "/api/llm/endpoints"),
    "llm_costs": ("llm-registry", "/api/llm/costs?group_by=model"),
    "llm_costs_by_agent": ("llm-registry", "/api/llm/costs?group_by=caller"),
    "hub": ("hubfsm", "/api/hub/state"),
    "goals": ("hubfsm", "/api/goals"),
}


@dataclass(frozen=True, slots=True)
class Read:
    available: bool
    data: Any = None
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        if self.available:
            return {"available": True, "data": self.data}
        return {"available": False, "detail": self.detail}


class Sources:
    """One pooled HTTP client for every call the dashboard makes to another service."""

    def __init__(self, urls: dict[str, str], read_token: str, timeout: float) -> None:
        self.urls = urls
        self._read_token = read_token
        self._client = httpx.AsyncClient(timeout=timeout)

    async def close(self) -> None:
        await self._client.aclose()

    async def read(self, service: str, path: str) -> Read:
        url = self.urls[service] + path
        try:
            response = await self._client.get(url, headers=self._auth(self._read_token))
        except httpx.HTTPError as exc:
            return Read(False, detail=f"{service} not available ({type(exc).__name__})")
        if response.status_code == 404:
            return Read(False, detail=f"{service} does not offer {path.split('?')[0]} yet")
        if response.status_code != 200:
            return Read(False, detail=f"{service} answered {response.status_code}")
        try:
            return Read(True, response.json())
        except ValueError:
            return Read(False, detail=f"{service} answered something other than JSON")

    async def read_panels(self, names: list[str]) -> dict[str, Read]:
        reads = await asyncio.gather(*(self.read(*READS[name]) for name in names))
        return dict(zip(names, reads, strict=True))

    async def act(self, service: str, path: str, token: str, body: Any = None) -> Any:
        """POST `path` (with the JSON `body`, if any) on `service` with the caller's own
        token; its error becomes ours."""
        url = self.urls[service] + path
        try:
            response = await self._client.post(url, headers=self._auth(token), json=body)
        except httpx.HTTPError as exc:
            raise UnavailableError(
                f"{service} is not reachable ({type(exc).__name__}); try again",
                code=f"{service.replace('-', '_')}_unavailable",
            ) from None
        if response.status_code >= 400:
            raise _relayed(service, path, response)
        log.info("action.sent", extra={"service": service, "path": path.split("?")[0]})
        return response.json() if response.content else None

    @staticmethod
    def _auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


_BY_STATUS: dict[int, type[AgentcomError]] = {
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    422: InvalidError,
}


def _relayed(service: str, path: str, response: httpx.Response) -> AgentcomError:
    """The owner's refusal as our own error: same status class, same code, same detail."""
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        body = {}
    code = str(body.get("error") or "refused")
    if response.status_code == 404 and code in ("refused", "not_found"):  # no such route there
        return UnavailableError(f"{service} does not offer {path} yet", code="not_available")
    kind = _BY_STATUS.get(response.status_code, UnavailableError)
    detail = str(body.get("detail") or f"{service} answered {response.status_code}")
    return kind(detail, code=code, field=body.get("field"))
