"""One way for CLI commands to call a service's HTTP API with the admin token."""

from typing import Any

import httpx

from agentcom_cli import stack, tokens
from agentcom_cli.console import fail
from agentcom_common.settings import CommonSettings


def call(
    service: str,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    settings: CommonSettings | None = None,
    timeout: float = 10,
) -> Any:
    """The JSON reply (None for 204); any failure ends the command with a one-line message."""
    settings = settings or CommonSettings()
    value = tokens.read_token(settings)
    if value is None:
        fail("no token: start the stack with `agentcom up` or set AGENTCOM_TOKEN")
    base = stack.service_urls(settings, stack.read(settings.home))[service]
    try:
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {value}"}, timeout=timeout
        ) as client:
            response = client.request(method, path, json=body)
    except httpx.HTTPError as exc:
        fail(
            f"cannot reach the {service} ({type(exc).__name__}); is the stack up? `agentcom status`"
        )
    if response.status_code >= 400:
        try:
            problem = response.json()
            fail(f"{problem.get('error')}: {problem.get('detail')}")
        except ValueError:  # not our problem JSON (a proxy's page, a crash): say what came back
            fail(f"the {service} answered HTTP {response.status_code}: {response.text[:200]}")
    if response.status_code == 204 or not response.content:
        return None
    return response.json()
