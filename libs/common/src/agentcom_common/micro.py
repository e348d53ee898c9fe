"""nats.micro: every NATS RPC of every service goes through `endpoint()`.

It parses the request under the same JSON rules as an HTTP body (`wire.loads`), validates it
with the endpoint's contract, calls the same op the HTTP route calls, and turns errors into
`Nats-Service-Error-Code`/`Nats-Service-Error` headers. nats.micro would otherwise answer an
unexpected exception with code 500 and its `repr()`, leaking internals.

A reply that cannot be sent (larger than the server's max_payload, connection gone) is not
dropped silently: the caller gets a small `reply_too_large` error instead when possible, and
the endpoint's `undelivered` hook hands back what the op did (a claim's tasks go back to the
queue), so a failed reply never strands work.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.aio.client import Client
from nats.errors import MaxPayloadError
from nats.micro import add_service  # pyright: ignore[reportUnknownVariableType]  # nats-py: loosely typed callbacks
from nats.micro.request import Handler, Request
from nats.micro.service import Group, Service
from pydantic import BaseModel, ValidationError

from agentcom_common import db, subjects, wire
from agentcom_common.errors import AgentcomError

log = logging.getLogger(__name__)


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
        try:
            body = contract.model_validate(wire.loads(req.data or b"{}", max_depth=max_depth))
            reply = await op(body)
        except ValidationError as exc:
            await req.respond_error("invalid_field", first_error(exc)[1])
        except AgentcomError as exc:
            await req.respond_error(exc.code, exc.detail, headers=exc.headers() or None)
        except Exception as exc:  # nats.micro would otherwise reply "500" with repr(error)
            if (away := db.unavailable(exc)) is not None:
                log.warning("rpc.db_unavailable", extra={"subject": req.subject})
                await req.respond_error(away.code, away.detail, headers=away.headers())
                return
            log.exception("rpc.failed", extra={"subject": req.subject})
            await req.respond_error("internal", "internal error; see service logs")
        else:
            await _deliver(req, reply, undelivered)

    return handle


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
        code = "reply_too_large" if isinstance(exc, MaxPayloadError) else "reply_failed"
        try:
            await req.respond_error(
                code, f"the reply ({len(data)} bytes) could not be sent: {type(exc).__name__}"
            )
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
