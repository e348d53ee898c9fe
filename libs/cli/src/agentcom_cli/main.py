"""The `agentcom` command: start the stack, check it, manage tokens."""

# Start-up time is part of the product (`--version` and `task list` must answer in well under
# half a second): this module and the command groups it registers import only typer at the top;
# each command imports what it needs (settings, HTTP, the database, NATS) when it runs.
from importlib.metadata import entry_points, version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from agentcom_cli.backup import backup_app, restore
from agentcom_cli.console import JsonFlag, fail, friendly, id_table, out, print_json
from agentcom_cli.goals import goal_app
from agentcom_cli.llm import llm_app
from agentcom_cli.tasks import repo_app, task_app

if TYPE_CHECKING:
    from agentcom_common.settings import CommonSettings

app = typer.Typer(
    help="AgentCom: run and operate a fleet of coding agents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
token_app = typer.Typer(help="Print the admin token, or create, list and revoke tokens.")
app.add_typer(token_app, name="token")
agent_app = typer.Typer(
    help="Register, list, remove agents and rotate their credentials.", no_args_is_help=True
)
app.add_typer(agent_app, name="agent")
app.add_typer(llm_app, name="llm")
app.add_typer(task_app, name="task")
app.add_typer(repo_app, name="repo")
app.add_typer(goal_app, name="goal")
app.add_typer(backup_app, name="backup")
app.command("restore")(restore)


# other packages add command groups (the sidecar adds `agentcom sidecar`) through this entry point
# group, so this package never imports them
for _point in entry_points(group="agentcom.commands"):
    app.add_typer(_point.load(), name=_point.name)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"agentcom {version('agentcom')}")  # not rich: it would cost 0.1 s here
        raise typer.Exit()


@app.callback()
def main(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """AgentCom: run and operate a fleet of coding agents."""


def _settings(**overrides: object) -> "CommonSettings":
    from agentcom_common.settings import CommonSettings

    try:
        return CommonSettings(**overrides)  # pyright: ignore[reportArgumentType]
    except ValueError as exc:
        fail(f"bad setting: {exc}")


@app.command()
@friendly
def up(
    port_offset: Annotated[
        int | None,
        typer.Option(help="Add N to every port so two stacks can share a machine."),
    ] = None,
    replicas: Annotated[
        int,
        typer.Option(
            min=1,
            max=10,
            help="Run N processes of each service (replica k on its port + 10 * (k - 1)).",
        ),
    ] = 1,
) -> None:
    """Start the whole stack: NATS, Postgres and every service, until Ctrl-C.

    With AGENTCOM_NATS_URL / AGENTCOM_DATABASE_URL set, those servers are used and none is
    started. Data lives under AGENTCOM_HOME (default .agentcom/) and is reused by the next run.
    A crashed service is restarted with backoff; Ctrl-C stops everything within 10 seconds.
    """
    from agentcom_cli import up as stack_up

    overrides = {} if port_offset is None else {"port_offset": port_offset}
    stack_up.run(_settings(**overrides), replicas)


@app.command()
@friendly
def status(as_json: JsonFlag = False) -> None:
    """Show the health and URL of every part of the stack; exit 1 if any part is down."""
    import asyncio

    from agentcom_cli import status as status_probe

    parts = asyncio.run(status_probe.collect(_settings()))
    if not status_probe.render(parts, as_json):
        raise typer.Exit(1)


@app.command()
@friendly
def doctor(
    as_json: JsonFlag = False,
    deep: Annotated[
        bool,
        typer.Option(
            "--deep",
            help="Also check the data: amcheck, outbox backlog, stuck consumers, orphaned rows.",
        ),
    ] = False,
) -> None:
    """Check what `agentcom up` needs and say how to fix what is missing; exit 1 on a problem.

    With --deep, also the stack's data (its Postgres is started for it when the stack is
    stopped) and its JetStream consumers, each problem with how to repair it.
    """
    from agentcom_cli import doctor as doctor_checks

    settings = _settings()
    findings = doctor_checks.run(settings)
    if deep:
        import asyncio

        from agentcom_cli import integrity

        findings += asyncio.run(integrity.run(settings))
    if not doctor_checks.render(findings, as_json):
        raise typer.Exit(1)


@token_app.callback(invoke_without_command=True)
def token(ctx: typer.Context) -> None:
    """Print the admin token that `agentcom up` created (or AGENTCOM_TOKEN)."""
    if ctx.invoked_subcommand is not None:
        return
    from agentcom_cli import place, tokens

    where = place.locate()
    value = tokens.read_token(where)
    if value is None:
        fail(tokens.missing(where))
    typer.echo(value)


def _call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    from agentcom_cli import api

    return api.call("scheduler", method, path, body)


@token_app.command("create")
@friendly
def token_create(
    role: Annotated[str, typer.Option(help="admin, agent or viewer.")] = "viewer",
    name: Annotated[str, typer.Option(help="Who or what the token is for.")] = "cli",
    as_json: JsonFlag = False,
) -> None:
    """Create a token and print it once; only its hash is stored."""
    made: dict[str, Any] = _call("POST", "/api/tokens", {"role": role, "name": name})
    if as_json:
        print_json(made)
    else:
        out().print(made["token"], highlight=False, soft_wrap=True)


@token_app.command("list")
@friendly
def token_list(as_json: JsonFlag = False) -> None:
    """List tokens (ids, roles, names; never the secrets)."""
    rows: list[dict[str, Any]] = _call("GET", "/api/tokens")
    if as_json:
        print_json(rows)
        return
    table = id_table("id", "role", "name", "created", "revoked")
    for row in rows:
        table.add_row(
            row["token_id"], row["role"], row["name"], row["created_at"], row["revoked_at"] or ""
        )
    out().print(table)


@token_app.command("revoke")
@friendly
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The id shown by `token list`.")],
    as_json: JsonFlag = False,
) -> None:
    """Revoke a token; every service refuses it within seconds. Errors: token_not_found."""
    _call("DELETE", f"/api/tokens/{token_id}")
    _done({"token_id": token_id, "revoked": True}, f"revoked {token_id}", as_json)


def _done(record: dict[str, Any], text: str, as_json: bool) -> None:
    """What a command that answers nothing (204) did: a line, or a small JSON record."""
    if as_json:
        print_json(record)
    else:
        out().print(text, soft_wrap=True)


@app.command("nats-credentials")
def nats_credentials() -> None:
    """Print a fresh NATS hub password and auth-callout issuer key as shell exports, for
    compose or Kubernetes (`eval "$(agentcom nats-credentials)"`). `agentcom up` makes its own.
    """
    from agentcom_common import natsauth

    made = natsauth.ServerAuth.generate()
    typer.echo(f"export AGENTCOM_NATS_HUB_PASSWORD={made.hub_password}")
    typer.echo(f"export AGENTCOM_NATS_ISSUER={made.issuer}")
    typer.echo(f"export AGENTCOM_SCHEDULER_NATS_ISSUER_SEED={made.issuer_seed}")


@agent_app.command("add")
@friendly
def agent_add(
    name: Annotated[
        str | None, typer.Argument(help="Lowercase name; a Culture ship if omitted.")
    ] = None,
    capability: Annotated[
        list[str] | None, typer.Option(help="Repeat for each capability.")
    ] = None,
    repo: Annotated[
        list[str] | None, typer.Option(help="Repeat for each repo it may work on.")
    ] = None,
    allow_hub_commands: Annotated[
        bool,
        typer.Option(
            "--allow-hub-commands",
            help="Let this agent run the shell commands and check commands that tasks carry.",
        ),
    ] = False,
    executor: Annotated[
        list[str] | None,
        typer.Option(
            help="An executor it runs (shell, ollama, claude, scan); repeat. "
            "Default: shell, ollama and claude."
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Register an agent and write its sidecar config (with its token, mode 0600)."""
    from agentcom_common.repos import repo_keys

    # the key every service compares (`/srv/app.git` and `/srv/app/` are `/srv/app`)
    body: dict[str, Any] = {"capabilities": capability or [], "repos": repo_keys(repo or [])}
    if name:
        body["name"] = name
    known = ("shell", "ollama", "claude", "scan")
    if bad := [e for e in executor or [] if e not in known]:
        fail(f"--executor {bad[0]}: one of {', '.join(known)}")
    made: dict[str, Any] = _call("POST", "/api/agents", body)
    sidecar: dict[str, Any] = {"allow_hub_commands": allow_hub_commands}
    if executor:
        sidecar["executors"] = executor
    config = _write_agent_config(made, sidecar)
    _show_agent(made, config, "registered", as_json)


def _write_agent_config(made: dict[str, Any], sidecar: dict[str, Any] | None = None) -> Path:
    """The sidecar config of an agent (mode 0600): its token and its own NATS login, and
    the sidecar's own choices (`sidecar`) given at `agent add`; `rotate` keeps them.

    The NATS URL is written without credentials: the hub's login never leaves the hub.
    """
    import json

    from agentcom_cli import stack, tokens
    from agentcom_common import natsauth

    settings = _settings()
    running = stack.read(settings.home)
    nats_url = running.nats_url if running else settings.nats_url
    config = settings.home / "agents" / f"{made['id']}.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    if sidecar is None:  # a rotation: keep what the operator chose, replace the credentials
        try:
            kept: dict[str, Any] = json.loads(config.read_text())
        except (OSError, ValueError):
            kept = {}
        sidecar = {k: kept[k] for k in ("allow_hub_commands", "executors") if k in kept}
    tokens.write_secret(
        config,
        stack.dumps(
            sidecar
            | {
                "agent_id": made["id"],
                "token": made["token"],
                "nats_url": natsauth.strip_credentials(nats_url) if nats_url else None,
                "nats_user": made.get("nats_user"),
                "nats_password": made.get("nats_password"),
                "hub_urls": stack.service_urls(settings, running),
            }
        ),
    )
    return config


def _show_agent(made: dict[str, Any], config: Path, what: str, as_json: bool) -> None:
    command = f"agentcom sidecar run --config {config}"
    if as_json:
        secret = {"token", "nats_password"}
        shown = {k: v for k, v in made.items() if k not in secret}
        print_json(shown | {"config": str(config), "command": command})
    else:
        out().print(
            f"agent {made['id']} {what}; its config, token and NATS login: {config}",
            soft_wrap=True,  # the path is copied: never broken over two lines
        )
        out().print("copy it to the agent's machine (it is secret) and start the sidecar there:")
        out().print(command, highlight=False, soft_wrap=True)


@agent_app.command("rotate")
@friendly
def agent_rotate(
    agent_id: Annotated[str, typer.Argument(help="The agent's id.")],
    as_json: JsonFlag = False,
) -> None:
    """Give an agent a new token and NATS password; the old ones stop working at once (its
    open NATS connections are closed) and its sidecar config is rewritten."""
    made: dict[str, Any] = _call("POST", f"/api/agents/{agent_id}/rotate")
    config = _write_agent_config(made)
    _show_agent(made, config, "has new credentials", as_json)


@agent_app.command("list")
@friendly
def agent_list(as_json: JsonFlag = False) -> None:
    """List agents with their state, capabilities and repos."""
    rows: list[dict[str, Any]] = _call("GET", "/api/agents")
    if as_json:
        print_json(rows)
        return
    table = id_table("id", "state", "capabilities", "repos")
    for row in rows:
        table.add_row(
            row["id"], row["state"], ", ".join(row["capabilities"]), ", ".join(row["repos"])
        )
    out().print(table)


@agent_app.command("remove")
@friendly
def agent_remove(
    agent_id: Annotated[str, typer.Argument(help="The agent's id.")], as_json: JsonFlag = False
) -> None:
    """Remove an agent; its token and NATS login stop working at once. Errors: agent_not_found."""
    _call("DELETE", f"/api/agents/{agent_id}")
    config = _settings().home / "agents" / f"{agent_id}.json"
    config.unlink(missing_ok=True)
    _done({"agent_id": agent_id, "removed": True}, f"removed {agent_id}", as_json)
