"""One way for CLI commands to call a service's HTTP API with the admin token.

It uses the standard library's HTTP client, not httpx: one request per command needs no pool,
and importing httpx alone took longer than the rest of `agentcom task list` (see
bench/cli_bench.py).
"""

import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from agentcom_cli import stack, tokens
from agentcom_cli.console import fail

if TYPE_CHECKING:
    from agentcom_cli.place import Where


def call(
    service: str,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    settings: "Where | None" = None,
    timeout: float = 10,
) -> Any:
    """The JSON reply (None for 204); any failure ends the command with a one-line message."""
    if settings is None:
        from agentcom_cli import place

        settings = place.locate()
    value = tokens.read_token(settings)
    if value is None:
        fail(tokens.missing(settings))
    base = stack.service_urls(settings, stack.read(settings.home))[service]
    request = urllib.request.Request(
        base.rstrip("/") + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {value}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, content = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, content = exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        fail(f"cannot reach the {service} ({reason}); is the stack up? `agentcom status`")
    if status >= 400:
        try:
            problem = json.loads(content)
            fail(f"{problem.get('error')}: {problem.get('detail')}")
        except (ValueError, AttributeError):  # not our problem JSON (a proxy's page, a crash)
            text = content.decode(errors="replace")[:200]
            fail(f"the {service} answered HTTP {status}: {text}")
    if status == 204 or not content:
        return None
    return json.loads(content)
