"""nats.micro: every NATS RPC of every service is served by `endpoint()` and asked by `call()`.

`endpoint` parses the request under the same JSON rules as an HTTP body (`wire.loads`),
validates it with the endpoint's contract, calls the same op the HTTP route calls, and turns
errors into headers. nats.micro would otherwise answer an unexpected exception with code 500
and its `repr()`, leaking internals. An error reply carries:

    Nats-Service-Error-Code  the code (`task_not_found`): what nats.micro and the CLI read
    Nats-Service-Error       the detail
    Agentcom-Error-Kind      the class, as its default code in `errors` (`not_found`)
    Agentcom-Error-Field     the field, for an invalid one
    Agentcom-Retry-After     seconds, to the millisecond (429 and 503 kinds), besides the
                             whole-second `Retry-After` that `AgentcomError.headers()` gives

`call` sends a contract to `agentcom.rpc.<service>.<op>` and returns the reply model, or raises
the same `AgentcomError` class the endpoint raised (`errors.rebuild`), so a caller catches
`StaleGenerationError` or `NotFoundError`, never compares codes by hand.

A reply that cannot be sent (larger than the server's max_payload, connection gone) is not
dropped silently: the caller gets a small `reply_too_large` error instead when possible, and
the endpoint's `undelivered` hook hands back what the op did (a claim's tasks go back to the
queue), so a failed reply never strands work.
"""

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.aio.client import Client
from nats.errors import MaxPayloadError, NoRespondersError, TimeoutError as NatsTimeoutError
from nats.micro import add_service  # pyright: ignore[reportUnknownVariableType]  # nats-py: loosely typed callbacks
from nats.micro.request import Handler, Request
from nats.micro.service import Group, Service
from opentelemetry.trace import SpanKind
from pydantic import BaseModel, ValidationError

from agentcom_common import db, subjects, telemetry, wire
from agentcom_common.errors import (
    AgentcomError,
    InvalidError,
    TooLargeError,
    TooManyRequestsError,
    UnavailableError,
    kind_of,
    rebuild,
)

log = logging.getLogger(__name__)

ERROR_CODE = "Nats-Service-Error-Code"  # nats.micro's own two headers
ERROR_DETAIL = "Nats-Service-Error"
ERROR_KIND = "Agentcom-Error-Kind"
ERROR_FIELD = "Agentcom-Error-Field"
RETRY_AFTER = "Agentcom-Retry-After"


def first_error(exc: ValidationError) -> tuple[str, str]:
    """(`field`, `field: message`) of the first pydantic error, the way clients should see it."""
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or "body"
    return field, f"{field}: {error['msg']}"


In = TypeVar("In", bound=BaseModel)
Out = TypeVar("Out", bound=BaseModel)


DEFAULT_DEPTH = 32  # CommonSettings.json_max_depth's default


def endpoint(
    contract: type[In],
    op: Callable[[In], Awaitable[Out]],
    *,
    concurrency: int = 64,
    max_depth: int = DEFAULT_DEPTH,
    undelivered: Callable[[Out], Awaitable[None]] | None = None,
) -> Handler:
    """Adapt `op` to nats.micro; up to `concurrency` requests of this endpoint run at once.

    `max_depth` is `json_max_depth`; `undelivered` undoes a reply's effect when it cannot be
    sent (see the module docstring).

    nats-py runs one subscription's callbacks one after another, so awaiting the op in the
    callback would queue every caller behind each database round trip. Each request gets its
    own task instead; the semaphore is the backpressure.
    """
    gate = asyncio.Semaphore(concurrency)
    running: set[asyncio.Task[None]] = set()

    def finished(task: asyncio.Task[None]) -> None:
        running.discard(task)
        gate.release()

    async def handle(req: Request) -> None:
        await gate.acquire()
        task = asyncio.create_task(answer(req))
        running.add(task)
        task.add_done_callback(finished)

    async def answer(req: Request) -> None:
        with telemetry.continued(req.headers, req.subject, SpanKind.SERVER, __name__):
            await answer_in_span(req)

    async def answer_in_span(req: Request) -> None:
        try:
            parsed = wire.loads(req.data or b"{}", max_depth=max_depth)
            with wire.parsed():  # its text and numbers are checked: the contract skips that
                body = contract.model_validate(parsed)
            reply = await op(body)
        except ValidationError as exc:
            field, detail = first_error(exc)
            await refuse(req, InvalidError(detail, field=field))
        except AgentcomError as exc:
            await refuse(req, exc)
        except Exception as exc:  # nats.micro would otherwise reply "500" with repr(error)
            if (away := db.unavailable(exc)) is not None:
                log.warning("rpc.db_unavailable", extra={"subject": req.subject})
                await refuse(req, away)
                return
            log.exception("rpc.failed", extra={"subject": req.subject})
            await refuse(req, AgentcomError("internal error; see service logs"))
        else:
            await _deliver(req, reply, undelivered)

    return handle


def error_headers(exc: AgentcomError) -> dict[str, str]:
    """What an error reply carries besides nats.micro's code and detail (module docstring)."""
    headers = exc.headers() | {ERROR_KIND: kind_of(exc)}
    if exc.field is not None:
        headers[ERROR_FIELD] = exc.field
    if isinstance(exc, TooManyRequestsError | UnavailableError):
        # milliseconds, rounded up as in the problem JSON: 0.2 ms must not read as "retry now"
        headers[RETRY_AFTER] = str(math.ceil(exc.retry_after * 1000) / 1000)
    return headers


async def refuse(req: Request, exc: AgentcomError) -> None:
    """Answer `req` with `exc` as an error reply that `call` raises again."""
    await req.respond_error(exc.code, exc.detail, headers=error_headers(exc))


def raised(headers: dict[str, str], code: str) -> AgentcomError:
    """The error an error reply's headers describe."""
    wait = headers.get(RETRY_AFTER)
    try:
        retry_after = float(wait) if wait is not None else None
    except ValueError:  # a foreign responder's header: the class's own default then
        retry_after = None
    return rebuild(
        headers.get(ERROR_KIND),
        headers.get(ERROR_DETAIL, code),
        code=code,
        field=headers.get(ERROR_FIELD),
        retry_after=retry_after,
    )


async def call(
    nc: Client, service: str, op: str, body: BaseModel, reply: type[Out], *, timeout: float = 5.0
) -> Out:
    """Ask `agentcom.rpc.<service>.<op>` with `body`; return the answer as a `reply`.

    Raises what the endpoint raised, as the same class (`StaleGenerationError`, `NotFoundError`,
    `InvalidError` with its `field`, `TooManyRequestsError` with its `retry_after`…), code and
    detail kept; `UnavailableError` `<service>_unavailable` when nobody answers within
    `timeout` seconds (the service is down or restarting; the request may have been handled);
    `AgentcomError` `bad_reply` when the answer is not a `reply`. A lost NATS connection raises
    nats-py's own errors, as a publish would.
    """
    subject = f"{subjects.rpc_group(service)}.{subjects.checked_id(op, 'op')}"
    try:
        msg = await nc.request(
            subject,
            # what the caller set: the endpoint applies the same contract's defaults (a
            # submit with every default spelt out was 307 bytes instead of 34, all parsed and
            # validated again there)
            body.model_dump_json(exclude_unset=True).encode(),
            timeout=timeout,
            headers=telemetry.inject_headers(),  # the endpoint's span continues this trace
        )
    except (NoRespondersError, NatsTimeoutError) as exc:
        raise UnavailableError(
            f"the {service} service did not answer {op} ({type(exc).__name__}): is it running?",
            code=f"{service}_unavailable",
        ) from exc
    if msg.headers and (code := msg.headers.get(ERROR_CODE)):
        raise raised(msg.headers, code)
    try:
        return reply.model_validate_json(msg.data)
    except ValidationError as exc:
        raise AgentcomError(
            f"{service} answered {op} with what is not a {reply.__name__}: {first_error(exc)[1]}",
            code="bad_reply",
        ) from None


async def _deliver(
    req: Request, reply: Out, undelivered: Callable[[Out], Awaitable[None]] | None
) -> None:
    data = reply.model_dump_json().encode()
    try:
        await req.respond(data)
    except Exception as exc:  # noqa: BLE001 - whatever stopped it, the caller must not wait for a reply
        log.error(
            "rpc.reply_failed",
            extra={"subject": req.subject, "bytes": len(data), "error": type(exc).__name__},
        )
        if undelivered is not None:
            try:
                await undelivered(reply)
            except Exception:  # the sweeps that repair assignments find what is left
                log.exception("rpc.undo_failed", extra={"subject": req.subject})
        why = f"the reply ({len(data)} bytes) could not be sent: {type(exc).__name__}"
        refusal = (
            TooLargeError(why, code="reply_too_large")
            if isinstance(exc, MaxPayloadError)
            else UnavailableError(why, code="reply_failed")
        )
        try:
            await refuse(req, refusal)
        except Exception:  # noqa: BLE001 - the connection is gone: the caller times out
            log.warning("rpc.error_reply_failed", extra={"subject": req.subject})


async def start(
    nc: Client, service: str, rpc: str, version: str, description: str
) -> tuple[Service, Group]:
    """Start `agentcom-<service>` and its endpoint group `agentcom.rpc.<rpc>`."""
    micro = await add_service(
        nc, name=subjects.micro_name(service), version=version, description=description
    )
    return micro, micro.add_group(name=subjects.rpc_group(rpc))
