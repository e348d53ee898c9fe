"""`agentcom goal …`: the hub's goals API (`/api/goals`) from the terminal.

Every command prints a plain line or a readable goal, and the exact JSON the API answered with
`--json`. Imports stay inside the commands: `agentcom` must start fast.
"""

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from agentcom_cli.console import JsonFlag, err, fail, friendly, id_table, json_line, out, print_json

goal_app = typer.Typer(
    help="Give the hub goals; list, show, follow, cancel and retry them; approve or reject "
    "their plans.",
    no_args_is_help=True,
)

GoalArg = Annotated[str, typer.Argument(help="The goal id (goal-…), as `goal list` shows it.")]
Reason = Annotated[str, typer.Option(help="Why; kept in the goal's history.")]

# where `watch` stops: the hub has finished, or waits for a person (`needs_review`)
SETTLED = {"complete", "failed", "cancelled", "needs_review"}


def _call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    from agentcom_cli import api

    return api.call("hubfsm", method, path, body)


def _moved(path: str, reason: str, as_json: bool) -> None:
    """POST a move (cancel, retry) with its reason and print the goal's new state."""
    from urllib.parse import urlencode

    done: dict[str, Any] = _call("POST", f"{path}?{urlencode({'reason': reason})}")
    _answer(done, as_json)


def _answer(goal: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(goal)
    else:
        out().print(f"{goal['id']}  {goal['state']}  {goal['reason']}", soft_wrap=True)


@goal_app.command("add")
@friendly
def add(
    title: Annotated[str, typer.Argument(help="What the goal is, in a line.")],
    criterion: Annotated[
        list[str] | None,
        typer.Option(
            help="A success criterion the hub checks the result against; at least one, "
            "repeat for each."
        ),
    ] = None,
    repo: Annotated[str | None, typer.Option(help="The repo to work on (required).")] = None,
    description: Annotated[str, typer.Option(help="More about what is wanted.")] = "",
    priority: Annotated[
        str | None, typer.Option(help="The lane of its tasks: urgent, high, normal or low.")
    ] = None,
    budget_tokens: Annotated[
        int | None, typer.Option(help="At most this many model tokens for the goal.")
    ] = None,
    budget_usd: Annotated[
        float | None, typer.Option(help="At most this many US dollars of model calls.")
    ] = None,
    review_plan: Annotated[
        bool,
        typer.Option(
            "--review-plan", help="Stop at awaiting_approval until `goal approve` or `reject`."
        ),
    ] = False,
    client_key: Annotated[
        str | None,
        typer.Option(help="Your id for this goal: a repeat with it returns the first goal."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Give the hub a goal: it plans it into tasks, runs them and checks the criteria."""
    if not criterion:
        fail("a goal needs at least one --criterion: how the hub knows it is done")
    if not repo:
        fail("a goal needs --repo: the repo the hub plans and works on")
    body: dict[str, Any] = {
        "title": title,
        "description": description,
        "success_criteria": criterion,
        "repo": repo,
        "source": "cli",
        "autonomy": "review_plan" if review_plan else "auto",
    }
    for key, value in (
        ("priority", priority),
        ("budget_tokens", budget_tokens),
        ("budget_usd", budget_usd),
        ("client_key", client_key),
    ):
        if value is not None:
            body[key] = value
    made: dict[str, Any] = _call("POST", "/api/goals", body)
    if as_json:
        print_json(made)
    else:
        out().print(f"{made['id']}  {made['state']}  {made['priority']}", soft_wrap=True)


@goal_app.command("list")
@friendly
def list_goals(
    state: Annotated[str | None, typer.Option(help="Only goals in this state.")] = None,
    repo: Annotated[str | None, typer.Option(help="Only goals on this repo.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """List goals, newest first, with their state and how many of their tasks are done."""
    from urllib.parse import urlencode

    query = {"state": state, "repo": repo, "limit": limit}
    page: dict[str, Any] = _call(
        "GET", "/api/goals?" + urlencode({k: v for k, v in query.items() if v is not None})
    )
    rows: list[dict[str, Any]] = page["goals"]
    if as_json:
        print_json(rows)
        return
    table = id_table("id", "state", "lane", "tasks", "title")
    for row in rows:
        done = f"{row['tasks_done']}/{row['tasks_total']}"
        table.add_row(row["id"], row["state"], row["priority"], done, row["title"][:80])
    out().print(table)


@goal_app.command("show")
@friendly
def show(goal_id: GoalArg, as_json: JsonFlag = False) -> None:
    """Show a goal: its criteria, plan (tasks and dependencies), tasks and their states,
    verifications (each criterion met or not, the gaps), cost and history."""
    from agentcom_cli import goalview

    goal: dict[str, Any] = _call("GET", f"/api/goals/{goal_id}")
    if as_json:
        print_json(goal)
    else:
        goalview.show(goal)


@goal_app.command("watch")
@friendly
def watch(
    goal_id: GoalArg,
    interval: Annotated[
        float, typer.Option(min=0.1, help="Seconds between looks at the goal.")
    ] = 1.0,
    as_json: JsonFlag = False,
) -> None:
    """Follow a goal until it is complete, failed, cancelled or needs_review, printing each
    move of the goal and each state change of its tasks (it looks every --interval seconds).

    Exit 0 when it is complete; 1 when failed, cancelled or needs_review; 130 on Ctrl-C. A plan
    awaiting approval is watched on (approve it from another terminal). With --json, one JSON
    object per change, a line each.
    """
    from agentcom_cli import goalview

    follower = goalview.Follower(goal_id)
    try:
        while True:
            goal: dict[str, Any] = _call("GET", f"/api/goals/{goal_id}")
            for change in follower.changes(goal):
                if as_json:
                    json_line(change)
                else:
                    goalview.print_change(change)
            if goal["state"] in SETTLED:
                break
            time.sleep(interval)  # the polling cadence the user asked for, not a stand-in
    except KeyboardInterrupt:
        err().print(f"stopped watching {goal_id}")
        raise typer.Exit(130) from None
    if goal["state"] != "complete":
        raise typer.Exit(1)


@goal_app.command("cancel")
@friendly
def cancel(
    goal_id: GoalArg,
    reason: Reason = "",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Cancel a goal that has not ended; the hub cancels its unfinished tasks at the queue."""
    if not yes and not typer.confirm(f"cancel {goal_id}?", err=True):
        raise typer.Exit(1)
    _moved(f"/api/goals/{goal_id}/cancel", reason, as_json)


@goal_app.command("retry")
@friendly
def retry(goal_id: GoalArg, reason: Reason = "", as_json: JsonFlag = False) -> None:
    """Plan a failed or needs_review goal again from the start, as a new attempt."""
    _moved(f"/api/goals/{goal_id}/retry", reason, as_json)


@goal_app.command("approve")
@friendly
def approve(
    goal_id: GoalArg,
    plan: Annotated[
        Path | None,
        typer.Option(
            help="Run this edited plan (JSON or YAML, as `goal show --json` shows `plan`) "
            "instead; the hub checks it like the model's."
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run the plan of a goal that is awaiting_approval (made with `goal add --review-plan`)."""
    from agentcom_cli.tasks import read_spec

    body = {"plan": read_spec(plan, "--plan", "plan fields") if plan else None}
    _answer(_call("POST", f"/api/goals/{goal_id}/plan/approve", body), as_json)


@goal_app.command("reject")
@friendly
def reject(
    goal_id: GoalArg,
    reason: Annotated[
        str | None,
        typer.Option(help="What is wrong with the plan (required): told to the planner."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Refuse the plan a goal waits with: the hub plans it again, told the reason."""
    if not reason:
        fail("a rejection needs --reason: the next plan is made knowing it")
    _answer(_call("POST", f"/api/goals/{goal_id}/plan/reject", {"reason": reason}), as_json)
