"""`agentcom llm …`: register, list, check and remove LLM endpoints (the llm-registry API)."""

import os
from typing import Annotated, Any

import typer

from agentcom_cli.console import JsonFlag, fail, friendly, id_table, out, print_json

llm_app = typer.Typer(help="Register, list, check and remove LLM endpoints.", no_args_is_help=True)


def _call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    from agentcom_cli import api

    return api.call("llm-registry", method, path, body, timeout=30)


@llm_app.command("add")
@friendly
def llm_add(
    endpoint_id: Annotated[str, typer.Argument(help="Letters, digits, _ and -.")],
    provider: Annotated[str, typer.Argument(help="ollama, openai or anthropic.")],
    base_url: Annotated[str, typer.Argument(help="e.g. http://gpu1:11434")],
    model_class: Annotated[
        list[str] | None, typer.Option("--class", help="Model class it serves; repeat.")
    ] = None,
    model: Annotated[list[str] | None, typer.Option(help="A model it serves; repeat.")] = None,
    host: Annotated[str | None, typer.Option(help="Host name, to join sidecar resources.")] = None,
    api_key_env: Annotated[
        str | None, typer.Option(help="Read the API key from this environment variable.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Register an endpoint and check it once; an API key comes from an environment variable.

    Never a command-line argument, which other users of the machine could see; it is never
    shown again.
    """
    body: dict[str, Any] = {
        "id": endpoint_id,
        "provider": provider,
        "base_url": base_url,
        "classes": model_class or [],
        "models": model or [],
        "host": host,
    }
    if api_key_env:
        key = os.environ.get(api_key_env)
        if not key:
            fail(f"{api_key_env} is not set")
        body["api_key"] = key
    _call("POST", "/api/llm/endpoints", body)
    checked: dict[str, Any] = _call("POST", f"/api/llm/endpoints/{endpoint_id}/check")
    if as_json:
        print_json(checked)  # the endpoint as its first check left it (health, models)
    else:
        out().print(f"endpoint {endpoint_id} added; health {checked['health']}", soft_wrap=True)


@llm_app.command("list")
@friendly
def llm_list(as_json: JsonFlag = False) -> None:
    """List endpoints with health, circuit, models and calls."""
    rows: list[dict[str, Any]] = _call("GET", "/api/llm/endpoints")
    if as_json:
        print_json(rows)
        return
    table = id_table("id", "provider", "health", "circuit", "models", "warm", "calls")
    for row in rows:
        table.add_row(
            row["id"],
            row["provider"],
            row["health"],
            row["circuit"],
            ", ".join(row["models"]),
            ", ".join(row["warm_models"]),
            str(row["metrics"]["calls"]),
        )
    out().print(table)


@llm_app.command("remove")
@friendly
def llm_remove(
    endpoint_id: Annotated[str, typer.Argument(help="The endpoint's id.")],
    as_json: JsonFlag = False,
) -> None:
    """Remove an endpoint."""
    _call("DELETE", f"/api/llm/endpoints/{endpoint_id}")
    if as_json:  # the API answers 204: the same shape as `token revoke` and `agent remove`
        print_json({"endpoint_id": endpoint_id, "removed": True})
    else:
        out().print(f"removed {endpoint_id}", soft_wrap=True)


@llm_app.command("route")
@friendly
def llm_route(
    tier: Annotated[str, typer.Argument(help="trivial, standard or complex")],
    model: Annotated[
        str | None, typer.Option(help="A model asked for by name, tried before the tier.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Show where a call of this tier would go now, and why (dry run)."""
    from urllib.parse import urlencode

    query = {"tier": tier} | ({"model": model} if model else {})
    routing: dict[str, Any] = _call("GET", f"/api/llm/route?{urlencode(query)}")
    if as_json:
        print_json(routing)
        return
    chosen = f"{routing['endpoint_id']} {routing['model']}" if routing["endpoint_id"] else "none"
    out().print(f"{routing['tier']} -> {chosen}", soft_wrap=True)
    if routing["reason"]:
        out().print(f"reason: {routing['reason']}", soft_wrap=True)
    table = id_table("endpoint", "model", "class", "score", "outcome")
    for step in routing["candidates"]:
        table.add_row(
            step["endpoint_id"],
            step["model"],
            step["model_class"],
            f"{step['score']:.3g}",
            step["outcome"],
        )
    if routing["candidates"]:
        out().print(table)
