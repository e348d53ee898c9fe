"""One error hierarchy with stable codes.

    AgentcomError                  code            HTTP
    ├── NotFoundError              *_not_found     404
    ├── InvalidError(field=)       invalid_field   422
    ├── ConflictError              conflict        409
    │   ├── TransitionRefusedError
    │   ├── InvalidTransitionError
    │   ├── StaleGenerationError   stale_generation
    │   └── DuplicateError
    ├── UnauthorizedError          unauthorized    401
    ├── ForbiddenError             forbidden       403
    ├── TooLargeError              *_too_large     413 (names the limit)
    ├── TooManyRequestsError       rate_limited,   429 (+ `retry_after` s, `Retry-After`)
    │                              budget_exhausted
    └── UnavailableError           *_unavailable   503 (+ `Retry-After`: a client may retry)

Rules: `ops` and `store` raise these; only the HTTP exception handler (`web.py`) and the NATS
adapter (`micro.py`) turn them into replies. `detail` says what is true and what to do; it never
carries a stack trace, a `repr()` or a secret.

A class's `default_code` names it on the wire too (its *kind*): a NATS error reply carries the
kind of the nearest class defined here beside its own code (`task_not_found` is kind
`not_found`), so `micro.call` raises the same class again (`rebuild`) without a table of codes.
A service's own subclass (`RateLimitedError`) travels as its parent from this module.
"""

import functools
import math
from typing import ClassVar


class AgentcomError(Exception):
    """Base of every error a client may see."""

    status: ClassVar[int] = 500
    default_code: ClassVar[str] = "internal"

    def __init__(self, detail: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code or self.default_code
        self.field = field

    def as_body(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.code, "detail": self.detail}
        if self.field is not None:
            body["field"] = self.field
        return body

    def headers(self) -> dict[str, str]:
        """Headers the reply carries besides the error (HTTP response, NATS error reply)."""
        return {}


class NotFoundError(AgentcomError):
    status = 404
    default_code = "not_found"


class InvalidError(AgentcomError):
    status = 422
    default_code = "invalid_field"


class ConflictError(AgentcomError):
    status = 409
    default_code = "conflict"


class TransitionRefusedError(ConflictError):
    default_code = "transition_refused"


class InvalidTransitionError(ConflictError):
    default_code = "invalid_transition"


class StaleGenerationError(ConflictError):
    default_code = "stale_generation"


class DuplicateError(ConflictError):
    default_code = "duplicate"


class UnauthorizedError(AgentcomError):
    status = 401
    default_code = "unauthorized"


class ForbiddenError(AgentcomError):
    status = 403
    default_code = "forbidden"


class TooLargeError(AgentcomError):
    """A body, task or value over a size limit; `detail` names the limit and its setting."""

    status = 413
    default_code = "too_large"


class UnavailableError(AgentcomError):
    """A dependency (Postgres, NATS, another service) is away; the same call may work later.

    `Retry-After` (whole seconds) says when a retry is worth it: a restart takes seconds.
    """

    status = 503
    default_code = "unavailable"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        field: str | None = None,
        retry_after: float = 1.0,
    ) -> None:
        super().__init__(detail, code=code, field=field)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


class TooManyRequestsError(AgentcomError):
    """Over a rate or budget; `retry_after` (seconds) says when a retry can succeed.

    The reply carries it twice: as the numeric `retry_after` field of the problem JSON (in
    milliseconds' precision, for clients that back off finely) and as the `Retry-After` header,
    which HTTP allows only in whole seconds, so it is rounded up (never 0: "retry now" would be
    a lie). Over NATS the header travels on the error reply.
    """

    status = 429
    default_code = "too_many_requests"

    def __init__(
        self, detail: str, *, retry_after: float, code: str | None = None, field: str | None = None
    ) -> None:
        super().__init__(detail, code=code, field=field)
        self.retry_after = max(0.0, retry_after)

    def as_body(self) -> dict[str, object]:
        # whole milliseconds, rounded up: a wait of 0.2 ms must not read as "retry now"
        return super().as_body() | {"retry_after": math.ceil(self.retry_after * 1000) / 1000}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


def kind_of(exc: AgentcomError) -> str:
    """The `default_code` of the nearest class of `exc` defined in this module."""
    for cls in type(exc).__mro__:
        if cls.__module__ == __name__ and issubclass(cls, AgentcomError):
            return cls.default_code
    return AgentcomError.default_code  # unreachable: AgentcomError itself is defined here


@functools.cache  # the classes of this module are all defined once it is imported
def _kinds() -> dict[str, type[AgentcomError]]:
    found: dict[str, type[AgentcomError]] = {}
    pending: list[type[AgentcomError]] = [AgentcomError]
    while pending:
        cls = pending.pop()
        if cls.__module__ == __name__:
            found[cls.default_code] = cls
        pending.extend(cls.__subclasses__())
    return found


def rebuild(
    kind: str | None,
    detail: str,
    *,
    code: str,
    field: str | None = None,
    retry_after: float | None = None,
) -> AgentcomError:
    """The error a reply of `kind` describes, as the class that raised it (or its parent here).

    Without a known kind (a sender older than the kind header) the class whose default code is
    `code` is used, else the base class: the code and detail are kept either way.
    """
    kinds = _kinds()
    cls = kinds.get(kind or "") or kinds.get(code) or AgentcomError
    if issubclass(cls, TooManyRequestsError):
        return cls(detail, code=code, field=field, retry_after=retry_after or 0.0)
    if issubclass(cls, UnavailableError):
        wait = 1.0 if retry_after is None else retry_after
        return cls(detail, code=code, field=field, retry_after=wait)
    return cls(detail, code=code, field=field)
