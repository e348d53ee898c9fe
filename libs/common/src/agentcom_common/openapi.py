"""The OpenAPI documents say what the routes really answer, so generated clients work.

Three sources, one place:
- a dependency marked with `answers(...)` (token auth, role checks, a session, a rate limit)
  declares its statuses on every route that depends on it, however deep;
- `errors(...)` on a route declares what only that route answers (404, 409);
- every route of a service router may answer 413, 422 and 503 (`web.InputLimits`, validation,
  Postgres or NATS away): `create_app` declares those on all of them.
Every error status is declared with the problem-JSON schema (`Problem`). And every string in
a document is declared without NUL (`STORABLE`), which `web.InputLimits` refuses everywhere
(body, query, path); an explicit `pattern` already says more.
`tests/test_openapi.py` runs schemathesis, every check, on every service against these.
"""

from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from agentcom_common.contracts.base import Contract

F = TypeVar("F", bound=Callable[..., Any])

STORABLE: Final = "^[^\\x00]*$"
"""Text without NUL. Lone surrogates are refused too, but a pattern cannot say so portably (an
ECMA-262 range of surrogate code units would also refuse every valid pair, every emoji)."""


class Problem(Contract):
    """The body of every error reply: a stable code, what is wrong, the field if one is."""

    error: str
    detail: str
    field: str | None = None
    retry_after: float | None = None


DESCRIPTIONS: Final[dict[int, str]] = {
    401: "`missing_token` / `invalid_token` (unknown or revoked), or `login_required`",
    403: "`forbidden`: the token's role may not do this (`detail` names the roles that may)",
    404: "`*_not_found`: no such thing (to an agent token: none of its own)",
    409: "the current state refuses it (`invalid_transition`, `*_exists`, `conflict`, ...)",
    413: "`body_too_large` (AGENTCOM_HTTP_MAX_BODY), or a route's own size limit "
    "(`task_too_large`); `detail` names the limit",
    422: "`invalid_field`: `field` names the place (`body` for JSON that does not parse, with "
    "line and column), `detail` what is wrong",
    429: "`rate_limited` / `budget_exhausted`: retry after `retry_after` seconds "
    "(also `Retry-After`)",
    502: "`upstream_failed`: the model provider failed",
    503: "`db_unavailable` (Postgres away), `nats_unavailable` (NATS away) or another "
    "dependency's `*_unavailable`; retry after `Retry-After` seconds",
}
EVERY_ROUTE: Final = (413, 422, 503)

_marked: dict[Callable[..., Any], tuple[int, ...]] = {}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route or router: these statuses, with the problem-JSON schema."""
    return {status: {"model": Problem, "description": DESCRIPTIONS[status]} for status in statuses}


def answers(*statuses: int) -> Callable[[F], F]:
    """Mark a dependency: every route that depends on it may answer `statuses`."""

    def mark(dependency: F) -> F:
        _marked[dependency] = statuses
        return dependency

    return mark


def declare(routes: Sequence[BaseRoute]) -> None:
    """Add to each route the statuses its marked dependencies may answer.

    Call on a router's routes before the app serves (the document is built on first use).
    """
    for route in routes:
        if isinstance(route, APIRoute):
            for status in sorted(_statuses(route.dependant)):
                route.responses.setdefault(status, errors(status)[status])


def install(app: FastAPI) -> None:
    """Declare every string of `app`'s document as text without NUL (see the module notes)."""
    build = app.openapi

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            _storable(build())
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = document


def _statuses(dependant: Dependant) -> set[int]:
    found = set(_marked.get(dependant.call, ())) if dependant.call is not None else set[int]()
    for sub in dependant.dependencies:
        found |= _statuses(sub)
    return found


ANY_JSON: Final = "StorableJson"
_ANY: Final = {"$ref": f"#/components/schemas/{ANY_JSON}"}
_TEXT: Final = {"type": "string", "pattern": STORABLE}


def _storable(document: dict[str, Any]) -> None:
    """Strings without NUL everywhere: in declared fields, and in the keys and values of
    free-form objects and arrays (`metadata`, tool arguments), as `ANY_JSON`."""
    _walk(document)
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    schemas[ANY_JSON] = {
        "description": "Any JSON value whose strings and keys hold no NUL.",
        "anyOf": [
            {"type": "null"},
            {"type": "boolean"},
            {"type": "number"},
            _TEXT,
            {"type": "array", "items": _ANY},
            {"type": "object", "propertyNames": _TEXT, "additionalProperties": _ANY},
        ],
    }


def _free(schema: dict[str, Any]) -> bool:
    """A string of no fixed grammar: a `date-time` or `uri` format says more than a pattern."""
    return schema.get("format") in (None, "password")  # password: a SecretStr, any text


def _walk(node: Any) -> None:
    if isinstance(node, list):
        for item in node:  # pyright: ignore[reportUnknownVariableType]  # JSON: any
            _walk(item)
        return
    if not isinstance(node, dict):
        return
    schema: dict[str, Any] = node  # pyright: ignore[reportUnknownVariableType]  # JSON: any
    kind = schema.get("type")
    if kind == "string" and not {"pattern", "enum", "const"} & set(schema) and _free(schema):
        schema["pattern"] = STORABLE
    elif kind == "object":
        schema.setdefault("propertyNames", _TEXT)
        if schema.get("additionalProperties", True) is True:
            schema["additionalProperties"] = _ANY
    elif kind == "array" and schema.get("items", True) in (True, {}):
        schema["items"] = _ANY
    for value in list(schema.values()):
        _walk(value)
