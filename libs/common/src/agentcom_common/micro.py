"""nats.micro: every NATS RPC of every service goes through `endpoint()`.

It parses the request with the endpoint's contract, calls the same op the HTTP route calls, and
turns errors into `Nats-Service-Error-Code`/`Nats-Service-Error` headers. nats.micro would
otherwise answer an unexpected exception with code 500 and its `repr()`, leaking internals.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.aio.client import Client
from nats.micro import add_service  # pyright: ignore[reportUnknownVariableType]  # nats-py: loosely typed callbacks
from nats.micro.request import Handler, Request
from nats.micro.service import Group, Service
from pydantic import BaseModel, ValidationError

from agentcom_common import subjects
from agentcom_common.errors import AgentcomError

log = logging.getLogger(__name__)


def first_error(exc: ValidationError) -> tuple[str, str]:
    """(`field`, `field: message`) of the first pydantic error, the way clients should see it."""
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or "body"
    return field, f"{field}: {error['msg']}"


In = TypeVar("In", bound=BaseModel)
Out = TypeVar("Out", bound=BaseModel)


def endpoint(
    contract: type[In], op: Callable[[In], Awaitable[Out]], *, concurrency: int = 64
) -> Handler:
    """Adapt `op` to nats.micro; up to `concurrency` requests of this endpoint run at once.

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
            reply = await op(contract.model_validate_json(req.data or b"{}"))
        except ValidationError as exc:
            await req.respond_error("invalid_field", first_error(exc)[1])
        except AgentcomError as exc:
            await req.respond_error(exc.code, exc.detail, headers=exc.headers() or None)
        except Exception:  # nats.micro would otherwise reply "500" with repr(error)
            log.exception("rpc.failed", extra={"subject": req.subject})
            await req.respond_error("internal", "internal error; see service logs")
        else:
            await req.respond(reply.model_dump_json().encode())

    return handle


async def start(
    nc: Client, service: str, rpc: str, version: str, description: str
) -> tuple[Service, Group]:
    """Start `agentcom-<service>` and its endpoint group `agentcom.rpc.<rpc>`."""
    micro = await add_service(
        nc, name=subjects.micro_name(service), version=version, description=description
    )
    return micro, micro.add_group(name=subjects.rpc_group(rpc))
