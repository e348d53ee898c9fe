"""`agentcom task …` and `agentcom repo …`: the queue's HTTP API from the terminal.

Every command prints a plain line or a table, and the exact JSON the API answered with
`--json`. Imports stay inside the commands: `agentcom` must start fast.
"""

from pathlib import Path
from typing import Annotated, Any

import typer

from agentcom_cli.console import JsonFlag, err, fail, friendly, id_table, out, print_json

task_app = typer.Typer(
    help="Submit, list, show, follow, cancel and retry tasks.", no_args_is_help=True
)
repo_app = typer.Typer(
    help="Register, list, pause, resume and remove the repos tasks work on.", no_args_is_help=True
)

TaskArg = Annotated[str, typer.Argument(help="The task id (task-…), as `task list` shows it.")]

CHECK_KINDS = ("file_exists", "test_passes", "command_succeeds", "git_clean")


def _call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    from agentcom_cli import api

    return api.call("queue", method, path, body)


def parse_check(text: str) -> dict[str, Any]:
    """`KIND[:ARG]` → a verification step: `test_passes:pytest -q`, `file_exists:out.txt`,
    `command_succeeds:make lint`, `git_clean`."""
    kind, _, arg = text.partition(":")
    kind = kind.strip()
    if kind not in CHECK_KINDS:
        fail(f"--check {text!r}: the kind must be one of {', '.join(CHECK_KINDS)}")
    if kind == "git_clean":
        if arg:
            fail("--check git_clean takes no argument")
        return {"type": kind}
    if not arg.strip():
        fail(f"--check {kind} needs an argument after the colon, e.g. {kind}:{_EXAMPLE[kind]}")
    key = "path" if kind == "file_exists" else "command"
    return {"type": kind, key: arg.strip()}


_EXAMPLE = {"file_exists": "out.txt", "test_passes": "'pytest -q'", "command_succeeds": "'make'"}


def read_spec(path: Path, option: str = "--file", what: str = "task fields") -> dict[str, Any]:
    """A request body from a JSON or YAML file (for `task submit`, the fields of
    `POST /api/tasks`); `option` and `what` name the flag and the fields in its errors."""
    import json

    import yaml

    try:
        text = path.read_text()
    except OSError as exc:
        fail(f"{option} {path}: {exc.strerror}")
    try:
        loaded: object = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        fail(f"{option} {path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}")
    if not isinstance(loaded, dict):
        fail(f"{option} {path}: the spec must be a mapping of {what}")
    return {str(k): v for k, v in loaded.items()}  # pyright: ignore[reportUnknownVariableType,reportUnknownArgumentType]


def _metadata(body: dict[str, Any], command: str | None, executor: str | None) -> dict[str, Any]:
    import shlex

    metadata: dict[str, Any] = dict(body.get("metadata") or {})
    if command is not None:
        try:
            metadata["command"] = shlex.split(command)
        except ValueError as exc:
            fail(f"--command: {exc}")
    if executor:
        metadata["executor"] = executor
    return metadata


@task_app.command("submit")
@friendly
def submit(
    description: Annotated[
        str | None, typer.Argument(help="What to do (or give it in --file).")
    ] = None,
    command: Annotated[
        str | None,
        typer.Option(
            "--command", help="A shell task: the command, split like a shell does (no shell runs)."
        ),
    ] = None,
    check: Annotated[
        list[str] | None,
        typer.Option(
            help="A verification step KIND[:ARG], repeatable: test_passes:'pytest -q', "
            "file_exists:PATH, command_succeeds:CMD, git_clean."
        ),
    ] = None,
    repo: Annotated[str | None, typer.Option(help="The repo it works on.")] = None,
    lane: Annotated[str | None, typer.Option(help="urgent, high, normal or low.")] = None,
    depends_on: Annotated[
        list[str] | None, typer.Option(help="A task that must complete first; repeatable.")
    ] = None,
    tier: Annotated[str | None, typer.Option(help="trivial, standard or complex.")] = None,
    executor: Annotated[
        str | None, typer.Option(help="The executor to run it (shell, ollama, claude, …).")
    ] = None,
    capability: Annotated[
        list[str] | None, typer.Option(help="A capability the agent needs; repeatable.")
    ] = None,
    max_retries: Annotated[int | None, typer.Option(help="Retries after a failure.")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="A JSON or YAML spec; the flags override it.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Submit a task to the queue and print its id."""
    body: dict[str, Any] = read_spec(file) if file else {}
    if description:
        body["description"] = description
    if "description" not in body:
        fail("a task needs a description: give it as the argument or in --file")
    if metadata := _metadata(body, command, executor):
        body["metadata"] = metadata
    if check:
        body["verification_steps"] = [parse_check(c) for c in check]
    for key, value in (
        ("repo", repo),
        ("priority", lane),
        ("complexity_tier", tier),
        ("max_retries", max_retries),
        ("depends_on", depends_on),
        ("needed_capabilities", capability),
    ):
        if value is not None:
            body[key] = value
    _answer(_call("POST", "/api/tasks", body), as_json)


@task_app.command("list")
@friendly
def list_tasks(
    state: Annotated[str | None, typer.Option(help="Only tasks in this state.")] = None,
    lane: Annotated[str | None, typer.Option(help="Only tasks in this lane.")] = None,
    agent: Annotated[str | None, typer.Option(help="Only tasks assigned to this agent.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """List tasks, newest first."""
    from urllib.parse import urlencode

    query = {"state": state, "priority": lane, "assigned_to": agent, "limit": limit}
    page: dict[str, Any] = _call(
        "GET", "/api/tasks?" + urlencode({k: v for k, v in query.items() if v is not None})
    )
    rows: list[dict[str, Any]] = page["tasks"]
    if as_json:
        print_json(rows)
        return
    if not rows:
        filtered = any(v is not None for v in (state, lane, agent))
        err().print("no tasks match" if filtered else "no tasks; `agentcom task submit` adds one")
        return
    table = id_table("id", "state", "lane", "agent", "description")
    for row in rows:
        table.add_row(
            row["id"],
            row["state"],
            row["priority"],
            row["assigned_to"] or "",
            row["description"].splitlines()[0][:80] if row["description"] else "",
        )
    out().print(table)


@task_app.command("show")
@friendly
def show(task_id: TaskArg, as_json: JsonFlag = False) -> None:
    """Show a task: state, agent, branch, verification, result and its history."""
    task: dict[str, Any] = _call("GET", f"/api/tasks/{task_id}")
    history: list[dict[str, Any]] = _call("GET", f"/api/tasks/{task_id}/history")
    if as_json:
        print_json(task | {"history": history})
        return
    result: dict[str, Any] = task.get("result") or {}
    lines = {
        "id": task["id"],
        "state": task["state"],
        "priority": task["priority"],
        "assigned_to": task.get("assigned_to") or "-",
        "repo": task.get("repo_url") or task.get("repo") or "-",
        # `branch` on the task is the base asked for; the work's own branch is in the result
        "base": task.get("branch") or result.get("base") or "the repo's default branch",
        "branch": result.get("branch"),
        "commit": result.get("commit"),
        "pr": result.get("pr_url"),
        "retry_count": task["retry_count"],
    }
    for key, value in lines.items():
        if value is not None:
            out().print(f"{key}: {value}", soft_wrap=True)
    for key in ("blocked_reason", "last_error"):
        if task.get(key):
            out().print(f"{key}: {task[key]}", soft_wrap=True)
    out().print(f"description: {task['description']}", soft_wrap=True)
    if command := task["metadata"].get("command"):
        out().print(f"command: {command}", soft_wrap=True)
    for step in task["verification_steps"]:
        out().print(f"check: {step}", soft_wrap=True)
    if task.get("result") is not None:
        import json

        out().print(f"result: {json.dumps(result)}", soft_wrap=True)
    out().print("history:")
    for row in history:
        history_line(row)


def history_line(row: dict[str, Any]) -> None:
    """One history row (a task's or a goal's: the same fields) as `at  from -> to  (actor)`."""
    moved = f"{row.get('from_state') or '-'} -> {row['to_state']}"
    reason = f"  {row['reason']}" if row.get("reason") else ""
    out().print(f"  {row.get('at', '')}  {moved}  ({row.get('actor', '')}){reason}", soft_wrap=True)


@task_app.command("watch")
@friendly
def watch(
    task_id: TaskArg,
    poll: Annotated[
        float,
        typer.Option(min=0.2, help="Seconds between looks at its history (events come at once)."),
    ] = 3.0,
    as_json: JsonFlag = False,
) -> None:
    """Follow a task until it ends: each state change, the output lines of its command and the
    tool calls of its agent, live (over NATS; without it, state changes only).

    Exit 0 when it completed; 1 when it ended otherwise (partial_pass, dead_letter,
    cancelled); 130 on Ctrl-C. With --json, one JSON object per line: a `transition` (the
    history row), a `progress` or a `tool_call` report, as the contracts define them.
    """
    from agentcom_cli import taskfeed

    try:
        state = taskfeed.follow(task_id, as_json, poll)
    except KeyboardInterrupt:
        err().print(f"stopped watching {task_id}")
        raise typer.Exit(130) from None
    if state != "completed":
        raise typer.Exit(1)


@task_app.command("cancel")
@friendly
def cancel(
    task_id: TaskArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Cancel a task that has not ended. Errors: task_not_found, a 409 if it has ended."""
    if not yes and not typer.confirm(f"cancel {task_id}?", err=True):
        raise typer.Exit(1)
    _answer(_call("POST", f"/api/tasks/{task_id}/cancel"), as_json)


@task_app.command("retry")
@friendly
def retry(task_id: TaskArg, as_json: JsonFlag = False) -> None:
    """Put a dead-lettered or cancelled task back in the queue. Errors: task_not_found, 409."""
    _answer(_call("POST", f"/api/tasks/{task_id}/retry"), as_json)


def _answer(task: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(task)
    else:
        out().print(f"{task['id']}  {task['state']}  {task['priority']}", soft_wrap=True)


RepoArg = Annotated[str, typer.Argument(help="The repo URL or path, as tasks name it.")]


def _show_repos(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print_json(rows)
        return
    table = id_table("url", "paused", "position")
    for row in rows:  # as added (`clone_url`); commands take either spelling
        url = row.get("clone_url") or row.get("url")
        table.add_row(str(url), str(row.get("paused")), str(row.get("position", "")))
    out().print(table)


@repo_app.command("add")
@friendly
def repo_add(url: RepoArg, as_json: JsonFlag = False) -> None:
    """Register a repo at the end of the list (tasks without a repo inherit the first)."""
    _show_repos(_call("POST", "/api/repos", {"url": url}), as_json)


@repo_app.command("list")
@friendly
def repo_list(as_json: JsonFlag = False) -> None:
    """List the registered repos in priority order."""
    _show_repos(_call("GET", "/api/repos"), as_json)


@repo_app.command("pause")
@friendly
def repo_pause(url: RepoArg, as_json: JsonFlag = False) -> None:
    """Pause a repo: its tasks stay queued until it is resumed."""
    _show_repos(_call("POST", "/api/repos/pause", {"url": url, "paused": True}), as_json)


@repo_app.command("resume")
@friendly
def repo_resume(url: RepoArg, as_json: JsonFlag = False) -> None:
    """Resume a paused repo."""
    _show_repos(_call("POST", "/api/repos/pause", {"url": url, "paused": False}), as_json)


@repo_app.command("remove")
@friendly
def repo_remove(url: RepoArg, as_json: JsonFlag = False) -> None:
    """Remove a repo from the list."""
    _show_repos(_call("POST", "/api/repos/remove", {"url": url}), as_json)
    if not as_json:
        err().print(f"removed {url}")
