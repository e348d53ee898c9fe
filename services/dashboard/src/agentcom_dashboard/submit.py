"""The page's "new task" form: its fields become the queue's `POST /api/tasks` body, sent with
the admin's own token, and the queue's refusal comes back naming the form's field.

The form is plain text (a command line, one check per line, ids separated by commas), so only
the shape is read here; everything the queue judges (lengths, lanes, tiers, id patterns, argv
rules) is left to it and its 422 names the field it refused, mapped back to the form's name.
"""

import shlex
from typing import Annotated, Any, Final

from fastapi import APIRouter
from pydantic import Field, StringConstraints

from agentcom_common.contracts.base import Request as RequestBody
from agentcom_common.errors import AgentcomError, InvalidError
from agentcom_common.openapi import errors
from agentcom_dashboard.access import AdminDep, LiveDep

router = APIRouter(prefix="/ui", tags=["page"])

CHECK_KINDS: Final = ("test_passes", "command_succeeds", "file_exists", "git_clean")
# the queue's body field (first part of its 422 `field`) → the form's field
FORM_FIELD: Final = {
    "description": "description",
    "repo": "repo",
    "priority": "lane",
    "metadata": "command",
    "verification_steps": "checks",
    "depends_on": "depends_on",
    "complexity_tier": "tier",
}
Text = Annotated[str, StringConstraints(max_length=10_000)]


class TaskForm(RequestBody):
    """The form as the page sends it; empty strings are fields left blank."""

    description: Text = ""
    repo: Annotated[str, StringConstraints(max_length=500)] = ""
    lane: Annotated[str, StringConstraints(max_length=20)] = "normal"
    command: Annotated[str, StringConstraints(max_length=4000)] = Field(
        default="", description="A command line, split as a POSIX shell would (no shell runs)."
    )
    checks: Text = Field(
        default="", description="One check a line: KIND[:ARG], e.g. test_passes:pytest -q."
    )
    depends_on: Annotated[str, StringConstraints(max_length=7000)] = Field(
        default="", description="Task ids separated by commas or spaces."
    )
    tier: Annotated[str, StringConstraints(max_length=20)] = ""


@router.post("/tasks", status_code=201, responses=errors(404, 409))
async def submit_task(form: TaskForm, live: LiveDep, who: AdminDep) -> Any:
    """Submit a task from the page's form through the queue, as its admin.

    Errors: 422 `invalid_field` naming the form's field (the queue's own refusals included),
    the queue's 404/409, 403, 503 when the queue is away."""
    body = queue_body(form)
    try:
        return await live.sources.act("queue", "/api/tasks", who.token, body)
    except AgentcomError as exc:
        if exc.field is not None:
            exc.field = form_field(exc.field)
        raise


def queue_body(form: TaskForm) -> dict[str, Any]:
    """The form's text as the queue's fields; only what was filled in is sent."""
    body: dict[str, Any] = {"description": form.description.strip(), "priority": form.lane}
    if form.repo.strip():
        body["repo"] = form.repo.strip()
    if form.command.strip():
        try:
            body["metadata"] = {"command": shlex.split(form.command)}
        except ValueError as exc:
            raise InvalidError(f"command: {exc}", field="command") from None
    if steps := [parse_check(line) for line in form.checks.splitlines() if line.strip()]:
        body["verification_steps"] = steps
    if ids := form.depends_on.replace(",", " ").split():
        body["depends_on"] = ids
    if form.tier.strip():
        body["complexity_tier"] = form.tier.strip()
    return body


def parse_check(line: str) -> dict[str, str]:
    """`KIND[:ARG]`, as `agentcom task submit --check` takes it."""
    kind, _, arg = (part.strip() for part in line.partition(":"))
    if kind not in CHECK_KINDS:
        raise InvalidError(
            f"checks: {line.strip()!r}: the kind must be one of {', '.join(CHECK_KINDS)}",
            field="checks",
        )
    if kind == "git_clean":
        return {"type": kind}
    if not arg:
        raise InvalidError(f"checks: {kind} needs an argument after the colon", field="checks")
    return {"type": kind, "path" if kind == "file_exists" else "command": arg}


def form_field(queue_field: str) -> str:
    return FORM_FIELD.get(queue_field.split(".")[0], queue_field)
